"""The poll's timeout while jobs run (consumers/runtime/poll.py busy_poll_s): short in a steady
stream, longer the longer nothing happens, never past its cap."""

import pytest

from jobstream.consumers.runtime.poll import BUSY_POLL_MAX_S, BUSY_POLL_S, busy_poll_s


def test_a_steady_stream_polls_for_the_shortest_time() -> None:
    # Results 0-20 ms apart (64 handlers of 20 ms give one every 0.3 ms).
    for quiet_s in (0.0, 0.0003, 0.005, 0.02):
        assert busy_poll_s(quiet_s) == BUSY_POLL_S


def test_the_timeout_grows_with_the_quiet_time_and_stays_a_small_share_of_it() -> None:
    assert busy_poll_s(0.1) == pytest.approx(0.005)  # a result 100 ms into a job: at most 5 ms late
    assert busy_poll_s(0.2) == pytest.approx(0.01)
    assert busy_poll_s(0.2) <= 0.2 * 0.05 + 1e-12


def test_a_long_quiet_stretch_is_capped() -> None:
    assert busy_poll_s(0.4) == BUSY_POLL_MAX_S
    assert busy_poll_s(3600.0) == BUSY_POLL_MAX_S


def test_never_shorter_than_the_floor_and_never_shrinks_as_quiet_grows() -> None:
    steps = [i / 1000 for i in range(0, 1000, 7)]
    timeouts = [busy_poll_s(q) for q in steps]
    assert min(timeouts) == BUSY_POLL_S
    assert timeouts == sorted(timeouts)


def test_only_delivery_reports_due_wait_longer_than_a_result_but_not_idle() -> None:
    """Acknowledgements cannot wake the poll either, but nothing waits on them before the next
    commit: one poll covers linger and round trip (a 1 ms poll each pass cost most of the CPU
    of a worker at a steady 500 jobs/s)."""
    from jobstream.consumers.runtime.poll import ACKS_POLL_S, IDLE_POLL_S, poll_timeout

    assert poll_timeout(True, 0.0, acks=True) == BUSY_POLL_S  # a result due wins
    assert poll_timeout(False, 0.0, acks=True) == ACKS_POLL_S
    assert BUSY_POLL_S < ACKS_POLL_S < IDLE_POLL_S
    assert poll_timeout(False, 0.0) == IDLE_POLL_S


def test_overdue_delivery_reports_back_off_like_results() -> None:
    """Reports that do not come (a broker away) must not keep the loop at 200 wake-ups a
    second for the whole outage when a result due would back off to 50."""
    from jobstream.consumers.runtime.poll import ACKS_POLL_S, poll_timeout

    assert poll_timeout(False, 0.01, acks=True) == ACKS_POLL_S
    assert poll_timeout(False, 60.0, acks=True) == BUSY_POLL_MAX_S == poll_timeout(True, 60.0)
