"""Delayed jobs (10): dispatch lateness and restore speed of the scheduler
(consumers/scheduling/), in-process on a real broker. In `make bench` (smaller sizes), or alone:

    .venv/bin/python -m benchmarks.delayed --jobs 10000 --spread 5:15 --pending 1000000

Lateness: N delayed jobs due over the spread across 6 partitions, one scheduler; per job, the
dispatched record's timestamp on T minus its due time (negative = early, counted). Restore: P
jobs due in an hour; a first owner restores them record by record (cold: no snapshot yet) and
leaves a snapshot when it stops; 1,000 jobs due in 15-20 s are published; a second owner
restores from the snapshot and the records after it (warm) and dispatches the 1,000: entries/s
of both restores, index bytes per job, the 1,000's lateness.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Bench, Row, bench_payload, limit_row, percentile, say
from jobstream.consumers.scheduling import Scheduler
from jobstream.schemas import wire
from tests.support.stack import BaseStack

RESTORE_TARGET = 200_000  # entries/s from assignment (issue 22)
LATENESS_TARGET_MS = 500.0  # p99 at 1,000 dispatches/s
Payload = Callable[[int], dict[str, Any]]


def _publish(stack: BaseStack, payload: Payload, n: int, lo_s: float, hi_s: float
             ) -> dict[str, int]:
    due: dict[str, int] = {}
    base = datetime.now(UTC)
    with stack.publisher() as pub:
        for i in range(n):
            when = base + timedelta(seconds=random.uniform(lo_s, hi_s))
            jid = pub.publish_async(stack.job_type, payload(i), key=f"k{i}", run_at=when)
            due[jid] = int(when.timestamp() * 1000)
    return due


def _restored(s: Scheduler, timeout: float = 600) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        parts = list(s.parts.values())
        if len(parts) == 6 and all(p.restored for p in parts):
            return
        time.sleep(0.05)


@dataclass
class Lateness:
    dispatched: int
    expected: int
    early: int
    p50: float
    p99: float
    max: float

    def describe(self) -> str:
        return (f"{self.dispatched:,}/{self.expected:,} dispatched, early={self.early}, "
                f"p50={self.p50:.0f} ms p99={self.p99:.0f} ms max={self.max:.0f} ms")


def _lateness_of(stack: BaseStack, due: dict[str, int]) -> Lateness:
    late = [m.timestamp()[1] - due[wire.decode_headers(m.headers()).get(wire.JOB_ID, "")]
            for m in stack.read_topic(stack.topics.main, timeout=60)]
    return Lateness(len(late), len(due), sum(1 for x in late if x < 0),
                    percentile(late, 50), percentile(late, 99), max(late, default=0))


def lateness(stack: BaseStack, payload: Payload, n: int, lo_s: float, hi_s: float) -> Lateness:
    s = Scheduler(stack.settings, [stack.job_type], stack.group, "bench-lateness")
    s.start()
    _restored(s)  # the owner in place before the first job is due, as in a running fleet
    due = _publish(stack, payload, n, lo_s, hi_s)
    deadline = time.monotonic() + hi_s + 60
    while s.dispatched < n and time.monotonic() < deadline:
        time.sleep(0.5)
    s.stop()
    return _lateness_of(stack, due)


@dataclass
class Restore:
    pending: int
    cold_per_s: float
    warm_per_s: float
    warm_s: float
    from_snapshot: int
    partitions: int
    tail: int
    bytes_per_job: float
    after: Lateness


def _restore_once(stack: BaseStack, name: str) -> tuple[Scheduler, float, int, int]:
    """A scheduler started and restored: it, seconds from assignment to the last partition
    restored, pending entries, index bytes."""
    s = Scheduler(stack.settings, [stack.job_type], stack.group, name)
    s.start()
    _restored(s)
    pending = sum(len(p.index) for p in s.parts.values())
    nbytes = sum(p.index.nbytes() for p in s.parts.values())
    # The partitions restore side by side on one consumer: from assignment to the last one.
    return s, max(p.restore_s for p in s.parts.values()), pending, nbytes


def restore(stack: BaseStack, payload: Payload, n: int) -> Restore:
    _publish(stack, payload, n, 3600, 7200)
    cold, cold_s, pending, nbytes = _restore_once(stack, "bench-restore-cold")
    cold.stop()  # leaves a snapshot of each partition
    soon = _publish(stack, payload, 1000, 15, 20)
    warm, warm_s, warm_pending, _ = _restore_once(stack, "bench-restore-warm")
    parts = list(warm.parts.values())
    snapped = sum(1 for p in parts if p.from_snapshot is not None)
    tail = sum(p.changed for p in parts)  # before its own dispatches' tombstones
    deadline = time.monotonic() + 60
    while warm.dispatched < len(soon) and time.monotonic() < deadline:
        time.sleep(0.5)
    warm.stop()
    return Restore(
        pending, pending / cold_s, warm_pending / warm_s, warm_s,
        snapped, len(parts), tail, nbytes / max(1, pending), _lateness_of(stack, soon),
    )


def describe(r: Restore) -> list[str]:
    return [
        f"restore, cold (record by record): {r.pending:,} pending at {r.cold_per_s:,.0f} "
        f"entries/s; index {r.bytes_per_job:.1f} bytes/job",
        f"restore, warm (snapshot of {r.from_snapshot}/{r.partitions} partitions + "
        f"{r.tail:,} records after it): {r.pending + 1000:,} pending in {r.warm_s:.2f} s = "
        f"{r.warm_per_s:,.0f} entries/s",
        f"after the warm restore: {r.after.describe()}",
    ]


def delayed(b: Bench) -> list[Row]:
    """Bench 10 in benchmarks/run.py."""
    n, pending = b.size(10_000, 2_000), b.size(100_000, 20_000)
    spread = (5.0, 5.0 + n / 1000)  # 1,000 dispatches a second
    say(f"delayed: {n:,} jobs due over {spread[0]:g}-{spread[1]:g} s")
    late = lateness(b.stack("delayed-lateness", "bench.noop"), bench_payload, n, *spread)
    say(f"delayed: {late.describe()}")
    say(f"delayed: {pending:,} pending due in 1-2 h, restored cold, then warm")
    r = restore(b.stack("delayed-restore", "bench.noop"), bench_payload, pending)
    for line in describe(r):
        say(f"delayed: {line}")
    return [
        limit_row("10 delayed", "dispatch lateness p99 at 1,000/s", late.p99, "ms",
                  LATENESS_TARGET_MS, f"{late.describe()}; 6 partitions, one scheduler"),
        limit_row("10 delayed", "jobs dispatched early", late.early + r.after.early, "jobs", 0,
                  "lateness run and after the warm restore"),
        Row("10 delayed", "restore from a snapshot (warm)", r.warm_per_s, "entries/s",
            r.cold_per_s, "record by record (cold)", r.warm_per_s / r.cold_per_s,
            f">= {RESTORE_TARGET:,} entries/s", r.warm_per_s >= RESTORE_TARGET,
            f"{r.pending:,} pending; snapshot of {r.from_snapshot}/{r.partitions} partitions "
            f"+ {r.tail:,} records; then {r.after.describe()}"),
        limit_row("10 delayed", "index memory per pending job", r.bytes_per_job, "bytes", 48,
                  f"{r.pending:,} pending due over an hour"),
    ]


def main() -> None:
    from tests.support.harness import make_stack

    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--spread", default="5:120", help="lo:hi seconds")
    ap.add_argument("--pending", type=int, default=100_000)
    args = ap.parse_args()
    lo, hi = (float(x) for x in args.spread.split(":"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-delayed-"))

    def seq(i: int) -> dict[str, Any]:
        return {"seq": i}

    if args.jobs:
        st = make_stack(tmp, args.bootstrap, uuid.uuid4().hex[:8])
        print(f"lateness: {lateness(st, seq, args.jobs, lo, hi).describe()} "
              f"(delays {lo:g}-{hi:g} s)")
    if args.pending:
        r = restore(make_stack(tmp, args.bootstrap, uuid.uuid4().hex[:8]), seq, args.pending)
        print("\n".join(describe(r)))


if __name__ == "__main__":
    main()
