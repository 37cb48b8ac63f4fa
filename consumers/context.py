"""The context a handler receives next to its payload."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobstream.schemas import wire

if TYPE_CHECKING:
    from jobstream.consumers.runtime.types import Job


@dataclass(frozen=True)
class JobContext:
    job_id: str
    job_type: str
    attempt: int
    key: str | None
    headers: Mapping[str, str]
    log: Any  # a structlog logger bound to the job's fields
    parent_job_id: str | None = None
    traceparent: str | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    enqueued_at_ms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # Set by the worker: hands a progress update to the poll thread, which records it.
    reporter: Callable[[float, str | None], None] | None = field(
        default=None, repr=False, compare=False)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Record how far the job is (0.0 to 1.0) and what it is doing, in the job's history
        (`jobstream jobs show`, `Publisher.status`). Cheap to call often: the worker keeps
        the latest update per job between its loop passes."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not (
                0.0 <= fraction <= 1.0):
            raise ValueError(f"progress: fraction must be a number from 0.0 to 1.0, got "
                             f"{fraction!r}")
        if message is not None and not isinstance(message, str):
            raise ValueError(f"progress: message must be a string, got {type(message).__name__}")
        if self.reporter is not None:
            self.reporter(float(fraction), message[:1024] if message else message)

    @property
    def trace_id(self) -> str | None:
        """The W3C trace id (32 hex digits) from traceparent, if any."""
        return wire.trace_id(self.traceparent)

    @property
    def span_id(self) -> str | None:
        parts = (self.traceparent or "").split("-")
        return parts[2] if len(parts) == 4 and len(parts[2]) == 16 else None


def log_fields(job: Job) -> dict[str, Any]:
    """The fields every lifecycle event of a job carries."""
    return {
        "job_id": job.job_id,
        "parent_job_id": job.headers.get(wire.PARENT_JOB_ID),
        "job_type": job.job_type,
        "attempt": job.attempt,
        "topic": job.topic,
        "partition": job.partition,
        "offset": job.offset,
        "trace_id": wire.trace_id(job.headers.get(wire.TRACEPARENT)),
    }


def context_for(job: Job, log: Any,
                reporter: Callable[[float, str | None], None] | None = None) -> JobContext:
    h = job.headers
    return JobContext(
        job_id=job.job_id,
        job_type=job.job_type,
        attempt=job.attempt,
        key=job.key.decode("utf-8", "replace") if job.key is not None else None,
        headers=h,
        log=log.bind(**log_fields(job)),
        parent_job_id=h.get(wire.PARENT_JOB_ID),
        traceparent=h.get(wire.TRACEPARENT),
        topic=job.topic,
        partition=job.partition,
        offset=job.offset,
        enqueued_at_ms=job.enqueued_at_ms,
        reporter=reporter,
    )
