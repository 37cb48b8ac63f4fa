"""The one header-name table, and the header <-> dict conversions of the wire format."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

JOB_TYPE: Final = "js-job-type"
SCHEMA_VERSION: Final = "js-schema-version"
JOB_ID: Final = "js-job-id"
PARENT_JOB_ID: Final = "js-parent-job-id"
TRACEPARENT: Final = "traceparent"
ATTEMPT: Final = "js-attempt"
ENQUEUED_AT: Final = "js-enqueued-at"
NOT_BEFORE: Final = "js-not-before"
PRODUCER: Final = "js-producer"

# The job's priority lane (docs/priorities.md), set by publish(priority=...) on job types with
# lanes and carried through retries, the DLQ and replays: a retry comes back in its own lane.
PRIORITY: Final = "js-priority"

# Delayed jobs, on T.scheduled records only (the dispatched job on T has no RUN_AT): the due
# time in ms since the epoch, and the job's own key (the record key there is the job id).
RUN_AT: Final = "js-run-at"
KEY: Final = "js-key"

# A chain step (producers/chains.py, docs/workflows.md): JSON with the chain's id, this step's
# number, every step's job type and the steps after this one in full.
CHAIN: Final = "js-chain"

# A batch member (docs/workflows.md): the id of its batch. The worker that records the member's
# final outcome writes it to jobstream.batches in the same interval.
BATCH: Final = "js-batch"

# Failure headers, on retry and DLQ records.
# transient | timeout | permanent | decode | unknown_job_type | crashed (consumers/runtime/retry.py)
ERROR_CATEGORY: Final = "js-error-category"
ERROR_CLASS: Final = "js-error-class"
ERROR_MESSAGE: Final = "js-error-message"
ERROR_STACK: Final = "js-error-stack"
ORIGIN_TOPIC: Final = "js-origin-topic"
ORIGIN_PARTITION: Final = "js-origin-partition"
ORIGIN_OFFSET: Final = "js-origin-offset"
FIRST_FAILED_AT: Final = "js-first-failed-at"
FAILED_AT: Final = "js-failed-at"
WORKER: Final = "js-worker"

# Set by `jobstream dlq replay`: which dead letter a replayed job came from.
REPLAYED_FROM: Final = "js-replayed-from"

FAILURE_HEADERS: Final = (
    ERROR_CATEGORY,
    ERROR_CLASS,
    ERROR_MESSAGE,
    ERROR_STACK,
    ORIGIN_TOPIC,
    ORIGIN_PARTITION,
    ORIGIN_OFFSET,
    FIRST_FAILED_AT,
    FAILED_AT,
    WORKER,
)

MAX_MESSAGE_BYTES: Final = 1024
MAX_STACK_BYTES: Final = 8192

HeaderList = list[tuple[str, bytes]]


def trace_id(traceparent: str | bytes | None) -> str | None:
    """The W3C trace id (32 hex digits) of a traceparent header, None if absent or malformed."""
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("ascii", "replace")
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def cut(text: str, limit: int) -> str:
    """Cut text to at most `limit` UTF-8 bytes without splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."


def encode_headers(headers: Mapping[str, str | int]) -> HeaderList:
    return [(k, str(v).encode("utf-8")) for k, v in headers.items()]


def decode_headers(raw: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Header list -> dict. Undecodable bytes are replaced, never raised: a bad header must
    reach the DLQ with the rest of its record, not crash the worker."""
    out: dict[str, str] = {}
    for k, v in raw or ():
        out[k] = "" if v is None else v.decode("utf-8", "replace")
    return out
