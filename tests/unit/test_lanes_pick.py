"""Issue 24: the lane decisions alone (consumers/runtime/lanes.py): weighted starts, a lone
lane, no starvation, and the buffer split that decides which lanes fetch."""

from __future__ import annotations

from collections import Counter

import pytest

from jobstream.consumers.runtime.lanes import LaneFlow, LanePicker


def _starts(picker: LanePicker, ready: list[bool], n: int) -> Counter[int]:
    got: Counter[int] = Counter()
    for _ in range(n):
        lane = picker.pick(ready)
        assert lane is not None
        got[lane] += 1
    return got


def test_all_backlogged_the_starts_follow_8_3_1_within_10_percent() -> None:
    got = _starts(LanePicker((8, 3, 1)), [True, True, True], 12_000)
    for lane, share in enumerate((8 / 12, 3 / 12, 1 / 12)):
        assert abs(got[lane] / 12_000 - share) <= 0.1 * share, (lane, got)


def test_every_round_of_twelve_holds_the_weights_exactly() -> None:
    picker = LanePicker((8, 3, 1))
    for _ in range(10):
        assert _starts(picker, [True, True, True], 12) == {0: 8, 1: 3, 2: 1}


@pytest.mark.parametrize("alone", [0, 1, 2])
def test_a_lone_lane_gets_every_start(alone: int) -> None:
    ready = [i == alone for i in range(3)]
    assert _starts(LanePicker((8, 3, 1)), ready, 1000) == {alone: 1000}


def test_a_lane_without_work_lends_its_share() -> None:
    got = _starts(LanePicker((8, 3, 1)), [False, True, True], 4000)
    assert got[1] == 3000 and got[2] == 1000  # 3:1 between the two left


def test_low_is_never_starved_by_a_high_flood() -> None:
    picker = LanePicker((8, 3, 1))
    gap = since = 0
    for _ in range(10_000):
        if picker.pick([True, False, True]) == 2:
            gap, since = max(gap, since), 0
        else:
            since += 1
    assert gap <= 8  # low starts at least once every 9 picks


def test_a_returning_lane_does_not_burst_past_its_share() -> None:
    picker = LanePicker((8, 3, 1))
    _starts(picker, [False, False, True], 500)  # low alone for a while
    got = _starts(picker, [True, True, True], 120)
    assert got == {0: 80, 1: 30, 2: 10}


def test_nothing_ready_picks_nothing_and_bad_weights_are_refused() -> None:
    assert LanePicker((8, 3, 1)).pick([False, False, False]) is None
    with pytest.raises(ValueError, match="positive"):
        LanePicker((1, 0))


def test_a_lone_lane_may_fill_the_whole_buffer() -> None:
    flow = LaneFlow((8, 3, 1), 1200)
    assert flow.step([0, 0, 1199]) == [False, False, False]
    assert flow.step([0, 0, 1200]) == [False, False, True]


def test_a_full_buffer_of_low_never_stops_high_from_fetching() -> None:
    flow = LaneFlow((8, 3, 1), 1200)
    assert flow.step([0, 0, 1200]) == [False, False, True]
    assert flow.step([500, 0, 1200]) == [False, False, True]
    assert flow.step([800, 0, 1200]) == [True, False, True]  # high now holds its reserve


def test_under_a_high_flood_low_keeps_fetching_its_reserve_and_resumes_in_time() -> None:
    flow = LaneFlow((8, 3, 1), 1200)
    assert flow.reserves == (800, 300, 100)
    assert flow.step([1200, 0, 0]) == [True, False, False]
    assert flow.step([1200, 0, 99]) == [True, False, False]  # low below its reserve: fetches
    assert flow.step([1200, 0, 100]) == [True, False, True]
    assert flow.step([1200, 0, 51]) == [True, False, True]  # hysteresis
    assert flow.step([1200, 0, 50]) == [True, False, False]  # half its reserve left: resume
    assert flow.step([399, 0, 50]) == [False, False, False]


def test_pausing_is_decided_from_the_counts_alone() -> None:
    """A rebalance or restart builds a new flow: the same counts give the same decision."""
    a, b = LaneFlow((8, 3, 1), 1200), LaneFlow((8, 3, 1), 1200)
    a.step([1200, 0, 0])
    assert a.step([1200, 0, 100]) == b.step([1200, 0, 100])
