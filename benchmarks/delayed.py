"""Delayed jobs: dispatch lateness and restore speed of the scheduler (consumers/scheduling/),
in-process on a real broker.

    .venv/bin/python -m benchmarks.delayed --jobs 10000 --spread 5:60 --pending 100000

Lateness: N delayed jobs due over the spread across 6 partitions, one scheduler; per job, the
dispatched record's timestamp on T minus its due time (negative = early, counted). Restore: P
jobs due in an hour, then a fresh scheduler restores them: entries/s and index bytes per job.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.common import percentile
from jobstream.consumers.scheduling import Scheduler
from jobstream.schemas import wire
from tests.support.harness import Stack, make_stack


def _publish(stack: Stack, n: int, lo_s: float, hi_s: float) -> dict[str, int]:
    due: dict[str, int] = {}
    base = datetime.now(UTC)
    with stack.publisher() as pub:
        for i in range(n):
            when = base + timedelta(seconds=random.uniform(lo_s, hi_s))
            jid = pub.publish_async(stack.job_type, {"seq": i}, key=f"k{i}", run_at=when)
            due[jid] = int(when.timestamp() * 1000)
    return due


def _restored(s: Scheduler, timeout: float = 600) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        parts = list(s.parts.values())
        if len(parts) == 6 and all(p.restored for p in parts):
            return
        time.sleep(0.05)


def lateness(stack: Stack, n: int, lo_s: float, hi_s: float) -> None:
    s = Scheduler(stack.settings, [stack.job_type], stack.group, "bench-lateness")
    s.start()
    _restored(s)  # the owner in place before the first job is due, as in a running fleet
    due = _publish(stack, n, lo_s, hi_s)
    deadline = time.monotonic() + hi_s + 60
    while s.dispatched < n and time.monotonic() < deadline:
        time.sleep(0.5)
    s.stop()
    late = []
    for m in stack.read_topic(stack.topics.main, timeout=60):
        jid = wire.decode_headers(m.headers()).get(wire.JOB_ID, "")
        late.append(m.timestamp()[1] - due[jid])
    early = sum(1 for x in late if x < 0)
    print(f"lateness: {len(late):,}/{n:,} dispatched, early={early}, "
          f"p50={percentile(late, 50):.0f} ms p99={percentile(late, 99):.0f} ms "
          f"max={max(late):.0f} ms (delays {lo_s:g}-{hi_s:g} s)")


def restore(stack: Stack, n: int) -> None:
    _publish(stack, n, 3600, 7200)
    s = Scheduler(stack.settings, [stack.job_type], stack.group, "bench-restore")
    t0 = time.monotonic()
    s.start()
    _restored(s)
    took = time.monotonic() - t0
    pending = sum(len(p.index) for p in s.parts.values())
    nbytes = sum(p.index.nbytes() for p in s.parts.values())
    # The partitions restore side by side on one consumer: from assignment to the last one.
    restoring = max(p.restore_s for p in s.parts.values())
    s.stop()
    print(f"restore: {pending:,} pending in {restoring:.2f} s from assignment = "
          f"{pending / restoring:,.0f} entries/s ({took:.1f} s with the group join); "
          f"index {nbytes / max(1, pending):.1f} bytes/job")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--spread", default="5:120", help="lo:hi seconds")
    ap.add_argument("--pending", type=int, default=100_000)
    args = ap.parse_args()
    lo, hi = (float(x) for x in args.spread.split(":"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-delayed-"))
    if args.jobs:
        lateness(make_stack(tmp, args.bootstrap, uuid.uuid4().hex[:8]), args.jobs, lo, hi)
    if args.pending:
        restore(make_stack(tmp, args.bootstrap, uuid.uuid4().hex[:8]), args.pending)


if __name__ == "__main__":
    main()
