"""Record -> Job. Everything that can be wrong with a record's bytes or headers is found here
and reported as a decode (or unknown_job_type) failure, never raised into the poll loop."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping

from jobstream.config.topics import JobTopics
from jobstream.consumers.errors import failure_of
from jobstream.consumers.runtime.types import Category, Job
from jobstream.schemas import cloudevents, wire
from jobstream.schemas.registry import DecodeError, SchemaRegistry, UnknownJobType

# Header times are milliseconds since the epoch. Below this (2001-09-09) a value is seconds;
# more than this far ahead it is microseconds or nanoseconds (both are off by a factor of
# 1000, so the bounds can be generous).
_MIN_TIME_MS = 10**12
_MAX_AHEAD_MS = 366 * 86_400_000


def _int_header(headers: dict[str, str], name: str, *, required: bool, minimum: int = 0) -> int:
    text = headers.get(name)
    if text is None:
        if required:
            raise DecodeError(f"missing header {name}")
        return 0
    try:
        value = int(text)
    except ValueError:
        raise DecodeError(f"header {name} is not an integer: {text[:40]!r}") from None
    if value < minimum:
        raise DecodeError(f"header {name} must be >= {minimum}, got {value}")
    return value


def _time_header(headers: dict[str, str], name: str, now_ms: int, warnings: list[str]) -> int:
    """A time header in ms since the epoch, 0 when absent or implausible. An implausible one
    is flagged, not refused: the job itself is fine, and a replay keeps the header, so a
    refusal could never be repaired."""
    value = _int_header(headers, name, required=False)
    if value and not _MIN_TIME_MS <= value <= now_ms + _MAX_AHEAD_MS:
        unit = "seconds" if value < _MIN_TIME_MS else "microseconds or nanoseconds"
        warnings.append(
            f"header {name}={value} is not milliseconds since the epoch (looks like {unit}); "
            "ignored"
        )
        return 0
    return value


def topic_carriers(topics: Mapping[str, JobTopics]) -> dict[str, frozenset[str]]:
    """Topic -> the job types configured on it. One each, unless several job types' `topic`
    settings name the same topic: the one way a topic is configured to carry several types."""
    out: dict[str, set[str]] = {}
    for job_type, jt_topics in topics.items():
        for topic in jt_topics.consumed:
            out.setdefault(topic, set()).add(job_type)
    return {topic: frozenset(types) for topic, types in out.items()}


def decode_record(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    raw_headers: list[tuple[str, bytes]] | None,
    registry: SchemaRegistry,
    handled: Collection[str],
    *,
    carries: Collection[str],
    accepts: Mapping[str, Collection[str]] | None = None,
    now_ms: int | None = None,
) -> Job:
    """`handled`: the job types this worker has handlers for; `carries`: the job types the
    record's topic is configured for (topic_carriers); `accepts`: job type -> the header formats
    it accepts (schemas/cloudevents.py; absent: jobstream only)."""
    raw = raw_headers if raw_headers is not None else []  # (Message.headers() is a new list)
    mapped = cloudevents.to_jobstream(wire.decode_headers(raw), accepts or {}, carries)
    headers = mapped.headers  # the record's, with js-* filled in from ce_* (CloudEvents)
    job = Job(topic, partition, offset, key, value, headers, raw)
    job.job_id = headers.get(wire.JOB_ID, "") or f"{topic}:{partition}:{offset}"
    job.job_type = headers.get(wire.JOB_TYPE, "")
    warnings: list[str] = mapped.warnings
    now = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        if mapped.fault:
            raise DecodeError(mapped.fault)
        if not headers.get(wire.JOB_ID):
            raise DecodeError(f"missing header {wire.JOB_ID}")
        if not job.job_type:
            raise DecodeError(f"missing header {wire.JOB_TYPE}")
        job.version = _int_header(headers, wire.SCHEMA_VERSION, required=True, minimum=1)
        job.attempt = _int_header(headers, wire.ATTEMPT, required=False, minimum=1) or 1
        job.enqueued_at_ms = _time_header(headers, wire.ENQUEUED_AT, now, warnings)
        job.not_before_ms = _time_header(headers, wire.NOT_BEFORE, now, warnings)
        job.header_warnings = tuple(warnings)
        if job.job_type not in handled:
            job.failure = failure_of(
                Category.UNKNOWN_JOB_TYPE,
                "UnknownJobType",
                f"no handler for job type {job.job_type!r} in this worker",
            )
            return job
        if job.job_type not in carries:
            # Else whoever can write one job topic could run every handler of the worker.
            raise DecodeError(
                f"job type {job.job_type!r} does not belong on topic {topic!r}, which carries "
                f"{' and '.join(repr(t) for t in sorted(carries)) or 'no job type'}"
            )
        if value is None:
            raise DecodeError("record has no value")
        job.payload = registry.decode(job.job_type, job.version, value)
    except UnknownJobType as e:
        job.failure = failure_of(Category.UNKNOWN_JOB_TYPE, "UnknownJobType", str(e))
    except DecodeError as e:
        job.failure = failure_of(Category.DECODE, "DecodeError", str(e))
    return job
