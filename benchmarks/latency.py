"""End-to-end latency (4) at half the measured maximum rate, per commit mode.

Jobs are published at a steady rate while observers read the job type's ledger topic:
- read_uncommitted: a ledger record appears once the worker's producer has it acknowledged,
  the moment the worker counts a job as finished (jobstream_job_latency_seconds). Target.
- read_committed (transactional mode only): the record becomes visible when its transaction
  commits - the moment the completion is durable for every reader. Shown for reference.
Latency = observed - enqueue time (taken just before publish_async, as js-enqueued-at is).
Jobs enqueued in the first second are warm-up and not counted.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from benchmarks import raw
from benchmarks.common import (
    PARTITIONS,
    Bench,
    Row,
    Stack,
    bench_payload,
    limit_row,
    percentile,
    reader,
    say,
)
from benchmarks.cpu import CpuWatch
from benchmarks.throughput import run_worker
from jobstream.config.settings import Mode

TARGET_P99_MS = {Mode.AT_LEAST_ONCE: 25.0, Mode.TRANSACTIONAL: 150.0}
ISOLATION = {"finished": "read_uncommitted", "committed": "read_committed"}
WARMUP_S = 1.0


class Observer(threading.Thread):
    """Records when each job id's ledger record is first seen."""

    def __init__(self, st: Stack, isolation: str) -> None:
        super().__init__(name=f"observer-{isolation}", daemon=True)
        self.seen: dict[bytes, float] = {}
        self.stop = threading.Event()
        self.consumer = reader(
            st.settings,
            f"observer-{isolation}",
            **{"isolation.level": isolation, "fetch.wait.max.ms": 100},
        )
        self.consumer.assign(
            [TopicPartition(st.topics.ledger, p, OFFSET_BEGINNING) for p in range(PARTITIONS)]
        )

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                # consume() waits out its whole timeout unless the batch fills, which would
                # stamp a record up to that late; poll() returns at the first record.
                msgs = self.consumer.consume(1000, timeout=0)
                if not msgs:
                    msg = self.consumer.poll(0.05)
                    msgs = [msg] if msg is not None else []
                now = time.time()
                for m in msgs:
                    key = m.key()
                    if m.error() is None and key is not None and key not in self.seen:
                        self.seen[key] = now
        finally:
            self.consumer.close()


def _own_histogram(port: int, le: str) -> tuple[float, float] | None:
    """(jobs at or under the bucket `le`, all jobs) from the worker's latency histogram."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except Exception:
        return None
    under = total = None
    for line in text.splitlines():
        if line.startswith("jobstream_job_latency_seconds_bucket") and f'le="{le}"' in line:
            under = float(line.rsplit(" ", 1)[1])
        elif line.startswith("jobstream_job_latency_seconds_count"):
            total = float(line.rsplit(" ", 1)[1])
    return (under, total) if under is not None and total else None


def latency(b: Bench) -> list[Row]:
    seconds = b.size(20, 4)
    rows: list[Row] = []
    for mode in (Mode.AT_LEAST_ONCE, Mode.TRANSACTIONAL):
        short = "alo" if mode is Mode.AT_LEAST_ONCE else "txn"
        fixed = b.shared.get("latency_rate")
        rate = fixed or max_rate_of(b, mode, short) / 2
        st = b.stack(f"latency-{short}", "bench.noop", worker={"mode": mode.value})
        worker = st.start_worker(http=True)
        st.wait_ready()
        # Without transactions a read_committed reader sees what a read_uncommitted one sees:
        # a second reader would only load the two shared cores.
        labels = ["finished"] if mode is Mode.AT_LEAST_ONCE else ["finished", "committed"]
        observers = [Observer(st, ISOLATION[label]) for label in labels]
        for o in observers:
            o.start()
        total = int(rate * seconds)
        how = "fixed by --latency-rate" if fixed else f"half of {rate * 2:,.0f}"
        say(f"latency/{short}: {total:,} jobs at {rate:,.0f}/s ({how})")
        cpu = CpuWatch({"worker": worker.pid}, {"worker's poll thread": (worker.pid, worker.pid)})
        sent, t0 = _drive(st, rate, total, observers)
        used = cpu.read()
        own = _own_histogram(st.ports[0], "0.025")
        for o in observers:
            o.stop.set()
            o.join(10)
        st.stop_workers()
        st.tidy()
        for o, label in zip(observers, labels, strict=True):
            p50, p99, seen, missing = _percentiles(o, sent, t0)
            say(f"latency/{short} {label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            note = f"{seen:,} jobs at {rate:,.0f}/s" + (
                f", {missing} never seen" if missing else ""
            )
            target = TARGET_P99_MS[mode] if label == "finished" else None
            if label == "finished":
                say(f"latency/{short} {used.describe()}")
                if own is not None:
                    note += f"; worker's own histogram: {own[0] / own[1]:.0%} <= 25 ms"
                note += f"; {used.describe()}"
            rows.append(
                limit_row("4 latency", f"enqueue->{label} p50, {mode.value}", p50, "ms", None)
            )
            rows.append(
                limit_row(
                    "4 latency", f"enqueue->{label} p99, {mode.value}", p99, "ms", target, note
                )
            )
        rows.append(_raw_relay(b, short, rate, total, mode))
    return rows


def max_rate_of(b: Bench, mode: Mode, short: str) -> float:
    """The no-op maximum rate bench 1 measured in this run, or measured here."""
    max_rate = b.shared.get(f"max_rate_{mode.value}")
    if max_rate is None:
        n = b.size(20_000, 3_000)
        say(f"latency/{short}: measuring the max rate first ({n:,} no-op jobs)")
        max_rate = run_worker(
            b.stack(f"latency-max-{short}", "bench.noop", worker={"mode": mode.value}),
            n,
            timeout=300,
        )
        b.shared[f"max_rate_{mode.value}"] = max_rate
    return max_rate


def _drive(
    st: Stack, rate: float, total: int, observers: list[Observer]
) -> tuple[dict[bytes, float], float]:
    """Publish `total` jobs at `rate` and wait until every observer saw them all."""
    sent: dict[bytes, float] = {}
    pub = st.publisher()
    pub.publish("bench.noop", bench_payload(0))  # warm the publisher, outside the figures
    t0 = time.time()
    for i in range(total):
        due = t0 + i / rate
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        at = time.time()
        sent[pub.publish_async("bench.noop", bench_payload(i)).encode()] = at
    pub.flush(60)
    deadline = time.time() + 60
    while time.time() < deadline and not all(all(k in o.seen for k in sent) for o in observers):
        time.sleep(0.2)
    return sent, t0


def _percentiles(o: Observer, sent: dict[bytes, float], t0: float) -> tuple[float, float, int, int]:
    """p50, p99 (ms) of enqueue -> seen, jobs seen and jobs never seen (after the warm-up)."""
    counted = [k for k, at in sent.items() if at >= t0 + WARMUP_S]
    lat = [(o.seen[k] - sent[k]) * 1000 for k in counted if k in o.seen]
    return percentile(lat, 50), percentile(lat, 99), len(lat), len(counted) - len(lat)


def _raw_relay(b: Bench, short: str, rate: float, total: int, mode: Mode) -> Row:
    """The same two Kafka hops without jobstream: a raw consumer that writes each job's
    ledger-sized record as soon as it arrives and commits like the worker in `mode`
    (benchmarks/raw.py relay_loop)."""
    st = b.stack(f"latency-raw-{short}", "bench.noop")
    stop = threading.Event()
    relay = threading.Thread(
        target=raw.relay_loop, args=(st.settings, st.topics.main, st.topics.ledger, stop, mode)
    )
    relay.start()
    observer = Observer(st, "read_uncommitted")
    observer.start()
    try:
        # The relay runs in this process, on its own thread.
        assert relay.native_id is not None  # started
        cpu = CpuWatch({}, {"relay thread": (os.getpid(), relay.native_id)})
        sent, t0 = _drive(st, rate, total, [observer])
        used = cpu.read()
    finally:
        stop.set()
        observer.stop.set()
        relay.join(30)
        observer.join(10)
        st.tidy()
    p50, p99, seen, missing = _percentiles(observer, sent, t0)
    say(f"latency/{short} raw relay ({mode.value}): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    say(f"latency/{short} raw relay {used.describe()}")
    note = (
        f"p50 {p50:.1f} ms; {seen:,} jobs at {rate:,.0f}/s"
        + (f", {missing} never seen" if missing else "")
        + f"; {used.describe()}"
    )
    return limit_row(
        "4 latency", f"raw relay enqueue->seen p99, {mode.value}", p99, "ms", None, note
    )
