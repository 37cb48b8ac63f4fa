"""The pending index of a T.scheduled partition (consumers/scheduling/index.py) and the due
time of a delayed publish (producers/delayed.py)."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from jobstream.consumers.scheduling.index import WINDOW_MS, PendingIndex, key_hash
from jobstream.producers.delayed import due_ms
from jobstream.producers.errors import InvalidJob

NOW = 1_800_000_000_000


def test_entries_come_out_in_due_order_and_only_when_their_second_starts() -> None:
    idx = PendingIndex()
    dues = {off: NOW + random.randint(0, 10_000) for off in range(2000)}
    for off, due in dues.items():
        idx.add(key_hash(f"job-{off}".encode()), off, due)
    assert len(idx) == 2000
    assert idx.next_due_ms() == min(dues.values())
    got = idx.take_until(NOW + 4_999)
    assert [d for d, _ in got] == sorted(d for d, _ in got)
    assert {o for _, o in got} == {o for o, d in dues.items() if d < NOW + 5000}
    rest = idx.take_until(NOW + 20_000)
    assert len(got) + len(rest) == 2000 and idx.take_until(NOW + 99_000) == []


def test_reschedule_and_tombstone_make_old_entries_stale() -> None:
    idx = PendingIndex()
    a, b = key_hash(b"a"), key_hash(b"b")
    idx.add(a, 0, NOW)
    idx.add(b, 1, NOW)
    idx.add(a, 2, NOW + 5000)  # a rescheduled
    assert idx.remove(b)  # b cancelled
    assert len(idx) == 1
    assert idx.current(a) == 2 and idx.current(b) is None
    assert not idx.remove(a, offset=0)  # only the entry at its latest offset
    assert idx.remove(a, offset=2) and len(idx) == 0


def test_growth_and_sweeping_keep_every_live_entry() -> None:
    idx = PendingIndex()
    ids = [os.urandom(12) for _ in range(20_000)]
    for off, jid in enumerate(ids):
        idx.add(key_hash(jid), off, NOW + off)
        if off % 3 == 0:
            idx.remove(key_hash(jid))
    live = {key_hash(j): o for o, j in enumerate(ids) if o % 3}
    assert len(idx) == len(live)
    assert all(idx.current(h) == o for h, o in live.items())


@pytest.mark.parametrize(("n", "lo_ms", "hi_ms"), [
    (200_000, 5_000, 120_000),  # dense: due within two minutes
    (16_700, 3_600_000, 7_200_000),  # thin: bench 10's restore shape, per partition
], ids=["dense", "thin"])
def test_bytes_per_pending_job_stay_under_the_target(n: int, lo_ms: int, hi_ms: int) -> None:
    """Thin is the shape of bench 10's restore: 100,000 jobs due over an hour on 6 partitions,
    about 4.6 per second in a partition. With one bucket per due second the buckets cost more
    than their entries: 101 bytes per job measured (target 48)."""
    idx = PendingIndex()
    for off in range(n):
        idx.add(key_hash(os.urandom(16)), off, NOW + random.randint(lo_ms, hi_ms))
    assert idx.nbytes() / n <= 48


def test_a_window_is_taken_in_parts_in_due_order() -> None:
    """Buckets span a WINDOW_MS of due times and are taken from in part: each take returns
    exactly the entries whose second started, wherever they sit in the bucket, and an entry
    put back (requeue) or added meanwhile comes out in its turn."""
    idx = PendingIndex()
    base = (NOW // WINDOW_MS + 1) * WINDOW_MS
    rng = random.Random(7)
    dues = {off: base + rng.randint(0, 3 * WINDOW_MS) for off in range(3000)}
    for off, due in dues.items():
        idx.add(key_hash(f"j{off}".encode()), off, due)
    seen: dict[int, int] = {}
    step = 2_500
    for until in range(base - step, base + 3 * WINDOW_MS + step, step):
        got = idx.take_until(until)
        assert got == sorted(got)
        assert all(d // 1000 * 1000 <= until for d, _ in got)
        seen.update((o, d) for d, o in got)
        assert {o for o, d in dues.items() if d // 1000 * 1000 <= until} == set(seen)
        if until == base + WINDOW_MS // 2:
            back, due = got[0][1], got[0][0]
            idx.requeue(back, due)  # a dispatch that did not commit
            late = base + WINDOW_MS // 2 + 1500
            idx.add(key_hash(b"late"), 9999, late)
            dues[9999] = late
            del seen[back]
    assert seen == dues
    assert idx.take_until(base + 10 * WINDOW_MS) == []


def test_due_time_of_delay_and_run_at() -> None:
    assert due_ms(None, None, 10, NOW) is None
    assert due_ms(0, None, 10, NOW) is None
    assert due_ms("1.5s", None, 10, NOW) == NOW + 1500
    at = datetime.fromtimestamp(NOW / 1000 + 60, timezone(timedelta(hours=2)))
    assert due_ms(None, at, 3600, NOW) == NOW + 60_000
    assert due_ms(None, at - timedelta(hours=1), 3600, NOW) is None  # past: at once


@pytest.mark.parametrize(
    ("delay", "run_at", "message"),
    [
        (None, datetime(2030, 1, 1), "naive datetime"),
        ("2h", None, "beyond max_delay_s=1h"),
        ("soon", None, "invalid duration 'soon'"),
        (-5, None, "must not be negative"),
        ("1s", datetime(2030, 1, 1, tzinfo=UTC), "not both"),
    ],
)
def test_bad_delays_are_refused_with_a_reason(delay: object, run_at: object, message: str
                                              ) -> None:
    with pytest.raises(InvalidJob, match=message):
        due_ms(delay, run_at, 3600, NOW)  # type: ignore[arg-type]
