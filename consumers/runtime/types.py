"""The runtime's types, in one place: a job as the loop carries it (`Job`), a partition (`TP`),
what became of an attempt (`Outcome`) and why a job failed (`Category`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobstream.consumers.errors import Failure

TP = tuple[str, int]


class Category(StrEnum):
    """Failure category, written to the js-error-category header."""

    TRANSIENT = "transient"
    TIMEOUT = "timeout"
    PERMANENT = "permanent"
    DECODE = "decode"
    UNKNOWN_JOB_TYPE = "unknown_job_type"
    CRASHED = "crashed"  # its runs took the worker process down worker.max_crashes times



class Outcome(StrEnum):
    """What became of one attempt: the `outcome` label of the jobs metric and the INFO event."""

    SUCCEEDED = "succeeded"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"
    FAILED = "failed"  # retried in place (strict ordering): no record written
    DEDUPLICATED = "deduplicated"
    CANCELLED = "cancelled"  # `jobs cancel` cancelled it before it ran: skipped


# Outcome(value) goes through the enum machinery on each call; the per-job path looks it up.
OUTCOMES: dict[str, Outcome] = {o.value: o for o in Outcome}


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
    # Headers that were ignored as implausible (see _time_header); the worker logs them.
    header_warnings: tuple[str, ...] = ()
    # The running attempt's child jobs (consumers/runtime/children.py), set when it starts.
    children: Any = None

    @property
    def tp(self) -> TP:
        return (self.topic, self.partition)

    @property
    def order_key(self) -> bytes:
        """Jobs with the same order key run one after another (the job id when keyless)."""
        return self.key if self.key is not None else self.job_id.encode()
