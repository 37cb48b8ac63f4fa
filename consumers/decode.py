"""Record -> Job. Everything that can be wrong with a record's bytes or headers is found here
and reported as a decode (or unknown_job_type) failure, never raised into the poll loop."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from consumers.errors import Failure, failure_of
from consumers.retry import Category
from schemas import wire
from schemas.registry import DecodeError, SchemaRegistry, UnknownJobType

TopicPartition = tuple[str, int]


@dataclass
class Job:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    raw_headers: list[tuple[str, bytes]]
    job_type: str = ""
    job_id: str = ""
    attempt: int = 1
    version: int = 0
    enqueued_at_ms: int = 0
    not_before_ms: int = 0
    payload: dict[str, Any] | None = None
    failure: Failure | None = None  # set when the record cannot be run at all
    # A strict-ordering in-place retry: its partition stays paused until this run ends (not
    # only until it starts, or records behind it would be fetched and run meanwhile).
    holds_partition: bool = False

    @property
    def tp(self) -> TopicPartition:
        return (self.topic, self.partition)

    @property
    def order_key(self) -> bytes:
        """Jobs with the same order key run one after another (the job id when keyless)."""
        return self.key if self.key is not None else self.job_id.encode()


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


def decode_record(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    raw_headers: list[tuple[str, bytes]] | None,
    registry: SchemaRegistry,
    handled: Collection[str],
) -> Job:
    raw = list(raw_headers or [])
    headers = wire.decode_headers(raw)
    job = Job(topic, partition, offset, key, value, headers, raw)
    job.job_id = headers.get(wire.JOB_ID, "") or f"{topic}:{partition}:{offset}"
    job.job_type = headers.get(wire.JOB_TYPE, "")
    try:
        if not headers.get(wire.JOB_ID):
            raise DecodeError(f"missing header {wire.JOB_ID}")
        if not job.job_type:
            raise DecodeError(f"missing header {wire.JOB_TYPE}")
        job.version = _int_header(headers, wire.SCHEMA_VERSION, required=True, minimum=1)
        job.attempt = _int_header(headers, wire.ATTEMPT, required=False, minimum=1) or 1
        job.enqueued_at_ms = _int_header(headers, wire.ENQUEUED_AT, required=False)
        job.not_before_ms = _int_header(headers, wire.NOT_BEFORE, required=False)
        if job.job_type not in handled:
            job.failure = failure_of(
                Category.UNKNOWN_JOB_TYPE,
                "UnknownJobType",
                f"no handler for job type {job.job_type!r} in this worker",
            )
            return job
        if value is None:
            raise DecodeError("record has no value")
        job.payload = registry.decode(job.job_type, job.version, value)
    except UnknownJobType as e:
        job.failure = failure_of(Category.UNKNOWN_JOB_TYPE, "UnknownJobType", str(e))
    except DecodeError as e:
        job.failure = failure_of(Category.DECODE, "DecodeError", str(e))
    return job
