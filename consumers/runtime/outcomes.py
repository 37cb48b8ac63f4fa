"""Outcomes as pure functions: from a finished job to the record to send (its ledger entry, a
retry, a dead letter, a routing mark) and with which headers. Nothing here sends: the loop's
delivery (consumers/runtime/deliver.py) does."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from jobstream.config.settings import JobTypeSettings, Ordering
from jobstream.config.topics import JobTopics
from jobstream.consumers.errors import Failure
from jobstream.consumers.runtime.ledger import ROUTED, routed_key
from jobstream.consumers.runtime.retry import Decision, decide, not_before_ms
from jobstream.consumers.runtime.types import TP, Job
from jobstream.schemas import wire
from jobstream.schemas.ledger_entry import SUCCEEDED, encode_entry


@dataclass(slots=True)  # not frozen: one is made per job, and a frozen init costs more
class Outgoing:
    """One record to produce, keeping the source partition number."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: wire.HeaderList
    outcome: str  # retried | dead_lettered | retry_in_place
    tier: str | None = None
    delay_s: float = 0.0
    not_before_ms: int = 0  # a retry's js-not-before


def failure_headers(job: Job, failure: Failure, worker_id: str, now_ms: int) -> dict[str, str]:
    first = job.headers.get(wire.FIRST_FAILED_AT) or str(now_ms)
    return {
        wire.ERROR_CATEGORY: failure.category.value,
        wire.ERROR_CLASS: failure.error_class,
        wire.ERROR_MESSAGE: failure.message,
        wire.ERROR_STACK: failure.stack,
        wire.ORIGIN_TOPIC: job.topic,
        wire.ORIGIN_PARTITION: str(job.partition),
        wire.ORIGIN_OFFSET: str(job.offset),
        wire.FIRST_FAILED_AT: first,
        wire.FAILED_AT: str(now_ms),
        wire.WORKER: worker_id,
    }


def _carried(job: Job, drop: tuple[str, ...]) -> wire.HeaderList:
    """The job's own headers minus the ones we are about to rewrite (kept as raw bytes, so a
    malformed header reaches the DLQ exactly as it arrived)."""
    return [(k, v) for k, v in job.raw_headers if k not in drop]


def route_failure(
    job: Job,
    failure: Failure,
    cfg: JobTypeSettings,
    topics: JobTopics,
    worker_id: str,
    now_ms: int,
    jitter: float,
    rng: random.Random,
    due_floors: Mapping[tuple[str, int], int] | None = None,
) -> tuple[Decision, Outgoing | None]:
    """Decide what happens to a failed job; the Outgoing record, or None for in-place retry.

    due_floors: the latest js-not-before already written to each tier partition. A tier is
    read in order, so a record due before the one ahead of it waits for that one anyway:
    its not-before is raised to match, and the header says when it will really run. Jitter
    still spreads jobs that failed together; it can no longer make the head of a partition
    hold up records that were due seconds earlier (p99 lateness was 2 x jitter x delay)."""
    decision = decide(
        failure.category,
        job.attempt,
        cfg.max_attempts,
        topics.tier_seconds,
        strict=cfg.ordering is Ordering.STRICT,
        retry_after=failure.retry_after,
    )
    if decision.action == "retry_in_place":
        return decision, None
    fh = failure_headers(job, failure, worker_id, now_ms)
    if decision.action == "retry" and decision.tier is not None:
        delay = topics.tier_seconds[decision.tier]
        topic = topics.retries[decision.tier]
        due = not_before_ms(now_ms, delay, jitter, rng)
        due = max(due, (due_floors or {}).get((topic, job.partition), 0))
        extra = {
            **fh,
            wire.ATTEMPT: str(job.attempt + 1),
            wire.NOT_BEFORE: str(due),
        }
        headers = _carried(job, (*wire.FAILURE_HEADERS, wire.ATTEMPT, wire.NOT_BEFORE))
        headers += wire.encode_headers(extra)
        return decision, Outgoing(
            topic,
            job.partition,
            job.key,
            job.value,
            headers,
            "retried",
            tier=topic.rsplit(".", 1)[-1],
            delay_s=delay,
            not_before_ms=due,
        )
    headers = _carried(job, (*wire.FAILURE_HEADERS, wire.NOT_BEFORE)) + wire.encode_headers(fh)
    return decision, Outgoing(
        topics.dlq, job.partition, job.key, job.value, headers, "dead_lettered"
    )


def success_record(job: Job, ledger_tp: TP, worker_id: str, finished_ms: int,
                   result_digest: bytes | None = None) -> Outgoing:
    """A success's ledger entry: the job id, on the ledger partition of its source partition,
    with the SHA-256 of its result if it returned one."""
    value = encode_entry(SUCCEEDED, finished_ms, job.attempt, worker_id, result_digest)
    return Outgoing(ledger_tp[0], ledger_tp[1], job.job_id.encode(), value, [], "succeeded")


def routed_mark(
    job: Job, outcome: str, ledger_tp: TP, worker_id: str, finished_ms: int
) -> tuple[str, Outgoing]:
    """The ledger mark of a record retried or dead-lettered (so a redo does not route it
    again): its key, and the record that carries it."""
    key = routed_key(job.topic, job.partition, job.offset)
    value = encode_entry(ROUTED[outcome], finished_ms, job.attempt, worker_id)
    return key, Outgoing(ledger_tp[0], ledger_tp[1], key.encode(), value, [], "marked")
