"""Per-job cost breakdown (8), in-process: the real functions a worker calls for one no-op job,
each timed on its own (best of 3 runs of many calls) on a real Worker instance (at-least-once,
nothing consumed). Each row is the cost that piece adds per job when it is on; the baseline is
the wall time per job of the no-op worker in benchmark 1 (when it ran in the same invocation),
so the ratio is that piece's share of it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import Bench, Row, bench_payload, say
from jobstream.config.logging import configure_logging
from jobstream.config.settings import LogSettings, Mode
from jobstream.consumers.context import context_for, log_fields
from jobstream.consumers.jobs import load_app
from jobstream.consumers.runtime.decode import decode_record
from jobstream.consumers.runtime.executor import Executor, Task
from jobstream.consumers.runtime.hook_defaults import LifecycleLog
from jobstream.consumers.runtime.hooks import Finished
from jobstream.consumers.runtime.ledger_view import LedgerView
from jobstream.consumers.runtime.loop import Worker
from jobstream.consumers.runtime.types import Job, Outcome
from jobstream.schemas import history, wire
from jobstream.schemas.chain import GENESIS
from jobstream.schemas.ledger_entry import SUCCEEDED, encode_entry

LEDGER_ENTRIES = 100_000


def _best_us(fn: Callable[[], object], calls: int, repeat: int = 3) -> float:
    """Best per-call time in microseconds over `repeat` runs of `calls` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


def _handoff_us(jobs: int, threads: int) -> float:
    """Executor round trip per job: submit no-op tasks, drain every result (poll thread view)."""
    ex = Executor(threads)

    def noop(*_args: object) -> None:
        return None

    try:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for i in range(jobs):
                ex.submit(Task(noop, (None, None), False, 30.0, i))
            for _ in range(jobs):
                ex.results.get()
            best = min(best, (time.perf_counter() - t0) / jobs)
        return best * 1e6
    finally:
        ex.shutdown()


def costs(b: Bench) -> list[Row]:
    calls = b.size(50_000, 5_000)
    st = b.stack("costs", "bench.noop", worker={"mode": Mode.AT_LEAST_ONCE.value})
    log_path = st.dir / "costs-worker.log"
    log_file = open(log_path, "w")  # noqa: SIM115  (closed below; the logger keeps it)
    configure_logging(LogSettings(format="json"), stream=log_file, buffered=True)  # as a worker
    jobs = load_app("benchmarks.jobs")
    worker = Worker(st.settings, {"bench.noop": jobs["bench.noop"]})
    try:
        rows = _measure(b, st.topics.main, st.topics.ledger, worker, calls)
    finally:
        worker.executor.shutdown()
        worker.consumer.close()
        worker.interval.producer.flush(30)
        log_file.close()
        Path(log_path).unlink(missing_ok=True)
        st.tidy()
    return rows


def _measure(b: Bench, topic: str, ledger_topic: str, worker: Worker, calls: int) -> list[Row]:
    pub = worker.publisher
    _t, job_id, value, headers = pub.build("bench.noop", bench_payload(12345))
    key = job_id.encode()

    def record() -> Job:
        return decode_record(
            topic, 0, 42, key, value, headers, worker.registry, worker.jobs.keys(),
            carries=worker.receiver.carriers[topic], accepts=worker.accepts,
        )

    job = record()
    ltp = (ledger_topic, 0)
    view = LedgerView()
    view.add_many((uuid.uuid4().hex, int(time.time() * 1000)) for _ in range(LEDGER_ENTRIES))
    worker.ledger.views[ltp] = view
    worker.ledger.pending[ltp] = {}
    spare = LedgerView()
    spare.add_many((uuid.uuid4().hex, int(time.time() * 1000)) for _ in range(LEDGER_ENTRIES))
    say(f"costs: timing {calls:,} calls per piece")

    def logging_per_job() -> None:
        worker.log.info("received", **log_fields(job))
        worker.log.info("started", **log_fields(job))
        worker.log.info("succeeded", **log_fields(job), duration_ms=0.01)

    outcome_log = LifecycleLog(worker.log)
    succeeded = Finished(job, job.job_type, Outcome.SUCCEEDED, 1e-5)

    def outcome_line() -> None:
        outcome_log.after_outcome(succeeded)

    policy = history.Policy((1.0, 10.0, 60.0), 3, 30.0)

    pass_events: list[dict[str, Any]] = []

    def history_record() -> None:  # HistoryWriter.attempt's event; a batch of 100 sealed
        rec = history.attempt(
            job_id=job.job_id, job_type=job.job_type, attempt=job.attempt,
            worker=worker.worker_id, started_at=1_700_000_000_000,
            finished_at=1_700_000_000_001, outcome="succeeded", policy=policy,
            source=(job.topic, job.partition, job.offset),
            trace_id=wire.trace_id(job.headers.get(wire.TRACEPARENT)),
            enqueued_at=job.enqueued_at_ms or None, submitter=job.headers.get(wire.PRODUCER))
        pass_events.append(rec)
        if len(pass_events) == 100:  # (produced as one record: bench 1 has the produce)
            history.encode(history.batch(pass_events), GENESIS,
                           history.stream_for(job.topic, job.partition), plain=True)
            pass_events.clear()

    gathered = [0]

    def metrics_per_job() -> None:
        worker.metrics.finished("bench.noop", "succeeded", 1e-4, 0.01)
        gathered[0] += 1
        if gathered[0] == 100:
            worker.metrics.flush()
            gathered[0] = 0

    def ledger_write() -> None:
        value = encode_entry(SUCCEEDED, 1_700_000_000_000, 1, worker.worker_id)
        worker.ledger.add_pending(ltp, job.job_id, 1_700_000_000_000)
        spare.add(uuid.uuid4().hex, 1_700_000_000_000)  # what committed() does per entry
        del value

    ledger_value = encode_entry(SUCCEEDED, 1_700_000_000_000, 1, worker.worker_id)

    def produce_ledger() -> None:
        pub.send(ledger_topic, key, ledger_value, [], partition=0)

    def produce_raw() -> None:
        worker.interval.producer.produce(ledger_topic, ledger_value, key, partition=0)
        worker.interval.producer.poll(0)

    pub.max_record_bytes(ledger_topic)  # cached after the first call, as in the worker
    avro = _best_us(lambda: worker.registry.decode("bench.noop", 1, value), calls)
    decode_total = _best_us(record, calls)
    pieces: list[tuple[str, float, str]] = [
        ("Avro decode (SchemaRegistry.decode)", avro, "1 per job"),
        (
            "headers -> Job (decode_record minus Avro)",
            max(0.0, decode_total - avro),
            "1 per job",
        ),
        (
            "ledger lookup (Ledger.is_done, a miss)",
            _best_us(lambda: worker.ledger.is_done(ltp, job.job_id), calls),
            f"view of {LEDGER_ENTRIES:,} entries",
        ),
        (
            "ledger write (encode_entry, add_pending, view add)",
            _best_us(ledger_write, calls),
            "1 per job (uuid4 for the id included)",
        ),
        (
            "metrics (Metrics.finished, flushed every 100 jobs)",
            _best_us(metrics_per_job, calls),
            "1 counter + 2 histograms, applied per flush (the loop flushes every 5 ms)",
        ),
        (
            "logging (3 JSON events, log_fields each)",
            _best_us(logging_per_job, calls),
            "structlog JSON lines to a file; not in the sum (received and started are DEBUG)",
        ),
        (
            "outcome line (LifecycleLog.after_outcome, succeeded)",
            _best_us(outcome_line, calls),
            "the one INFO line a job writes; "
            + ("made in one string" if outcome_log.lines.usable else "through structlog"),
        ),
        (
            "history event (attempt; sealed 100 to a batch record)",
            _best_us(history_record, calls),
            "1 per attempt (job types with history: true, the default); a pass's events of "
            "one stream share a record; its produce not included",
        ),
        (
            "JobContext (context_for, binds ctx.log)",
            _best_us(lambda: context_for(job, worker.log), calls),
            "1 per job",
        ),
        (
            "ledger record produce (Publisher.send)",
            _best_us(produce_ledger, calls),
            f"raw produce+poll: {_best_us(produce_raw, calls):.1f} us",
        ),
        (
            "thread hand-off (Executor submit -> result)",
            _handoff_us(calls, worker.ws.max_in_flight),
            f"{worker.ws.max_in_flight} threads",
        ),
    ]
    worker.interval.producer.flush(30)
    per_job = None
    rate = b.shared.get(f"max_rate_{Mode.AT_LEAST_ONCE.value}")
    if rate:
        per_job = 1e6 / rate
    rows = []
    for name, us, note in pieces:
        say(f"costs: {name}: {us:.1f} us/job")
        rows.append(
            Row(
                "8 per-job cost",
                name,
                us,
                "us/job",
                per_job,
                "per job, worker in bench 1 alo" if per_job else "",
                us / per_job if per_job else None,
                "",
                None,
                note,
            )
        )
    # The worker writes the outcome line only (received and started are DEBUG lines): the
    # three-event row stays for comparison with older runs, out of the sum.
    total = sum(us for name, us, _ in pieces if not name.startswith("logging (3"))
    rows.append(
        Row(
            "8 per-job cost",
            "sum of the pieces above",
            total,
            "us/job",
            per_job,
            "per job, worker in bench 1 alo" if per_job else "",
            total / per_job if per_job else None,
            "",
            None,
            "CPU work per job; the rest of the wall time is waiting",
        )
    )
    return rows
