"""Bench 13: looking one job up (`jobstream jobs show`, `Publisher.status`) in a long history.

    .venv/bin/python -m benchmarks.run --only lookup

T.history of a 6-partition job type holds 1,000,000 records in the partition of the job's key
and 200,000 in each other partition, written over the last 23 hours (the records a worker
writes, sealed into a chain; other jobs' ids). The job's own three records are the newest of
its partition. Timed, median of three: the lookup with its key (one partition read), without it
(the partition of the job's id first, then every other one), and with the key and `--since -1h`
(the broker's time index skips what is older). The CLI adds its start-up, about half a second.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from confluent_kafka import Producer

from benchmarks.common import Bench, Row, Stack, limit_row, say
from jobstream.config.kafka import client_config
from jobstream.producers.status import status
from jobstream.schemas import history
from jobstream.schemas.chain import GENESIS
from jobstream.schemas.partitioner import partition_for

PARTITIONS = 6
SPAN_MS = 23 * 3600 * 1000
POLICY = history.Policy((1.0, 10.0), 4, 30.0)
TARGET_S = 5.0  # a lookup an operator waits for at a terminal (the issue sets no figure)


def _record(job_id: str, n: int, outcome: str, at: int, topic: str, p: int) -> bytes:
    rec = history.attempt(job_id=job_id, job_type="bench.noop", attempt=n, worker="w-1",
                          started_at=at - 3, finished_at=at, outcome=outcome, policy=POLICY,
                          source=(topic, p, n), trace_id="0" * 32)
    value, _ = history.encode(rec, GENESIS, history.stream_for(topic, p), plain=True)
    return value


def fill(st: Stack, key: str, target: str, big: int, small: int) -> None:
    """Other jobs' records in every partition (`big` in the key's, `small` in the rest), spread
    over the last SPAN_MS, then the target job's three records."""
    topics = st.topics
    kp = partition_for(key.encode(), PARTITIONS)
    p = Producer(client_config(st.settings.kafka, **{
        "linger.ms": 50, "batch.size": 1_000_000, "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000}))
    now = int(time.time() * 1000)
    template = _record("@@@@@@@@@@@@@@@@", 1, "succeeded", now, topics.main, 0)
    for part in range(PARTITIONS):
        n = big if part == kp else small
        for i in range(n):
            value = template.replace(b"@@@@@@@@@@@@@@@@", f"{part:02d}-{i:013d}".encode())
            at = now - SPAN_MS + i * SPAN_MS // n
            while True:
                try:
                    p.produce(topics.history, value, f"other-{i % 5000}".encode(),
                              partition=part, timestamp=at)
                    break
                except BufferError:
                    p.poll(0.05)
    outcomes = ("retried", "retried", "succeeded")
    for n, outcome in enumerate(outcomes, start=1):
        p.produce(topics.history, _record(target, n, outcome, now, topics.main, kp),
                  key.encode(), partition=kp, timestamp=now)
    if p.flush(300):
        raise RuntimeError("the history records were not all delivered in 300 s")


def _timed(st: Stack, target: str, **kw: Any) -> tuple[float, str]:
    times, state = [], ""
    for _ in range(3):
        t0 = time.perf_counter()
        found = status(st.settings, "bench.noop", target, timeout=300, **kw)
        times.append(time.perf_counter() - t0)
        state = f"{found.state} after {found.attempts}"
    return statistics.median(times), state


def bench(b: Bench) -> list[Row]:
    """Bench 13 in benchmarks/run.py."""
    big, small = b.size(1_000_000, 50_000), b.size(200_000, 10_000)
    st = b.stack("lookup", "bench.noop")
    key = "customer-4711"
    kp = partition_for(key.encode(), PARTITIONS)
    # An id whose own partition is another: a lookup without the key must search them all.
    target = next(t for i in range(100) for t in [f"job-to-find-{i}"]
                  if partition_for(t.encode(), PARTITIONS) != kp)
    say(f"lookup: {big:,} history records in the key's partition, {small:,} in each other")
    t0 = time.perf_counter()
    fill(st, key, target, big, small)
    say(f"lookup: filled in {time.perf_counter() - t0:.1f} s")
    total = big + small * (PARTITIONS - 1)
    keyed, s1 = _timed(st, target, key=key)
    keyless, s2 = _timed(st, target)
    since, s3 = _timed(st, target, key=key, since_ms=int(time.time() * 1000) - 3600_000)
    for what, secs, state in (("--key", keyed, s1), ("no key", keyless, s2),
                              ("--key --since -1h", since, s3)):
        say(f"lookup: {what}: {secs:.2f} s ({state})")
    if not s1 == s2 == s3 == "succeeded after 3":
        raise RuntimeError(f"the lookups did not find the job: {s1}; {s2}; {s3}")
    id_p = partition_for(target.encode(), PARTITIONS)
    return [
        limit_row("13 lookup", "jobs show --key, one job among 1M history records", keyed, "s",
                  TARGET_S, f"{big:,} records in partition {kp}, read to its end"),
        limit_row("13 lookup", "jobs show without a key, every partition", keyless, "s",
                  2 * TARGET_S, f"{total:,} records (twice as many) in {PARTITIONS} partitions: "
                  f"the id's partition ({id_p}) first, then the others"),
        limit_row("13 lookup", "jobs show --key --since -1h", since, "s", None,
                  "the time index skips 22 of the partition's 23 hours"),
    ]
