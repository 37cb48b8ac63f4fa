"""The context a handler receives next to its payload."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobstream.config.logging import json_value
from jobstream.schemas import wire

if TYPE_CHECKING:
    from jobstream.consumers.runtime.children import Children
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
    # Set by the worker: this attempt's child jobs, produced only if the attempt succeeds.
    children: Children | None = field(default=None, repr=False, compare=False)

    def enqueue(self, job_type: str, payload: Mapping[str, Any], key: str | None = None,
                name: str | None = None, delay: str | float | None = None, *,
                run_at: datetime | None = None,
                headers: Mapping[str, str] | None = None, priority: str | None = None) -> str:
        """Enqueue a child job with this job's completion (docs/workflows.md): validated and
        encoded now (a bad payload raises here), written in the same commit as this job's
        success, and dropped if this attempt fails. Its id is derived from this job's id and
        `name` (or the call's index), so a re-run enqueues the same ids. `priority`: the child
        job type's lane (docs/priorities.md). Returns the child id."""
        if self.children is None:
            raise RuntimeError("enqueue: this context has no worker behind it")
        return self.children.add(job_type, payload, key=key, name=name, delay=delay,
                                 run_at=run_at, headers=headers, priority=priority)

    def chain(self, *steps: Any, key: str | None = None, name: str | None = None) -> str:
        """Start a chain (`jobstream.chain`) as a child of this job: its first step is
        enqueued like `enqueue`, the others follow one after another. Returns the first
        step's id."""
        from jobstream.producers.chains import as_chain

        if self.children is None:
            raise RuntimeError("chain: this context has no worker behind it")
        return self.children.add_chain(as_chain(steps), key=key, name=name)

    def batch(self, job_type: str, payloads: Any, *, on_complete: Any, on_success: Any = None,
              key: str | None = None, name: str | None = None) -> str:
        """Open a batch (docs/workflows.md) with this job's completion: its record and members
        are written in the same commit as this job's success, like `enqueue`; the batch id is
        derived from this job's id and `name` (or the call's index). `on_complete` runs once
        when every member has a final outcome, `on_success` too when none was dead-lettered.
        Inside a batch member, the new batch is nested: the member counts as final when it
        closes. Returns the batch id."""
        if self.children is None:
            raise RuntimeError("batch: this context has no worker behind it")
        return self.children.add_batch(job_type, payloads, on_complete=on_complete,
                                       on_success=on_success, key=key, name=name)

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


LOG_FIELD_NAMES = (
    "job_id", "parent_job_id", "job_type", "attempt", "topic", "partition", "offset", "trace_id"
)


def log_pairs(job: Job) -> str:
    """log_fields(job) as JSON pairs (config/logging.py json_pairs), made in one string: the
    fields of a job's outcome line, written without a dict or a bound logger."""
    h = job.headers
    parent = h.get(wire.PARENT_JOB_ID)
    trace = wire.trace_id(h.get(wire.TRACEPARENT))
    return (
        f'"job_id": {json_value(job.job_id)}, "parent_job_id": {json_value(parent)}, '
        f'"job_type": {json_value(job.job_type)}, "attempt": {json_value(job.attempt)}, '
        f'"topic": {json_value(job.topic)}, "partition": {json_value(job.partition)}, '
        f'"offset": {json_value(job.offset)}, "trace_id": {json_value(trace)}'
    )


class _BoundOnUse:
    """ctx.log: the worker's logger bound to the job's fields when the handler first uses it
    (most handlers never log: binding for each job cost a dict and a context copy)."""

    __slots__ = ("_bound", "_job", "_log")

    def __init__(self, log: Any, job: Job) -> None:
        self._log, self._job, self._bound = log, job, None

    def _target(self) -> Any:
        bound = self._bound
        if bound is None:
            bound = self._bound = self._log.bind(**log_fields(self._job))
        return bound

    def __getattr__(self, name: str) -> Any:
        if name in _BoundOnUse.__slots__:  # unset: a copy being made, not the logger's own
            raise AttributeError(name)
        return getattr(self._target(), name)

    def __repr__(self) -> str:
        return repr(self._target())


def context_for(job: Job, log: Any,
                reporter: Callable[[float, str | None], None] | None = None,
                children: Children | None = None) -> JobContext:
    """The context of one job's run, made per job: filled in directly, since the frozen
    dataclass's own __init__ sets each of its fields through object.__setattr__ (4 us a job;
    tests/unit/test_context.py checks it equals the one the constructor makes)."""
    h = job.headers
    ctx = JobContext.__new__(JobContext)
    ctx.__dict__.update(
        job_id=job.job_id,
        job_type=job.job_type,
        attempt=job.attempt,
        key=job.key.decode("utf-8", "replace") if job.key is not None else None,
        headers=h,
        log=_BoundOnUse(log, job),
        parent_job_id=h.get(wire.PARENT_JOB_ID),
        traceparent=h.get(wire.TRACEPARENT),
        topic=job.topic,
        partition=job.partition,
        offset=job.offset,
        enqueued_at_ms=job.enqueued_at_ms,
        extra={},
        reporter=reporter,
        children=children,
    )
    return ctx
