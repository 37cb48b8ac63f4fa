"""The `jobs.<job_type>` section of the settings: one job type's topics, retries, limits,
history and formats, with its circuit breaker; and the worker's DLQ guard (same shape)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from jobstream.config.durations import DurationText, Millis, Seconds, parse_duration
from jobstream.config.lane_rules import (
    check_fair_by,
    check_priorities,
    check_weights,
    default_weights,
)
from jobstream.config.model import _Model

DEFAULT_TIERS = ("10s", "1m", "10m")


class Ordering(StrEnum):
    KEY = "key"  # same key in offset order; failures go through retry topics
    STRICT = "strict"  # failures retried in place while the partition waits


class HeaderFormat(StrEnum):
    """How a job type's records may carry their metadata (docs/wire-format.md)."""

    JOBSTREAM = "jobstream"  # js-* headers
    CLOUDEVENTS = "cloudevents"  # CloudEvents 1.0 binary mode, ce_* headers


class CircuitBreakerSettings(_Model):
    """Circuit breaker for one job type: opens when `failure_ratio` of the handler runs in the
    last `window_s` failed (transient or timeout; at least `min_calls` runs), pauses the job
    type's partitions, and lets one probe through after `cooldown_s`."""

    failure_ratio: float = Field(
        0.5, gt=0, le=1,
        description="Share of the runs in the window that failed (transient or timeout) at "
        "which the breaker opens and the job type's partitions pause.",
    )
    window_s: Seconds = Field(30.0, gt=0, description="How far back handler runs are counted.")
    min_calls: int = Field(
        20, ge=1, description="Fewest runs in the window before the breaker can open."
    )
    cooldown_s: Seconds = Field(
        30.0, ge=0,
        description="How long the breaker stays open before one probe job runs; the probe's "
        "success closes it, its failure opens it again.",
    )


class DlqGuardSettings(_Model):
    """Stops the worker (exit code 4) when more than `max_ratio` of the jobs finished in the
    last `window_s` were dead-lettered (at least `min_jobs`): a bad deploy or schema change,
    not bad jobs. Other workers, or the previous release, take the partitions over."""

    max_ratio: float = Field(
        0.5, gt=0, lt=1,
        description="Share of the finished jobs in the window that were dead-lettered above "
        "which the worker stops (exit code 4) instead of dead-lettering more.",
    )
    window_s: Seconds = Field(60.0, gt=0, description="How far back finished jobs are counted.")
    min_jobs: int = Field(
        50, ge=1, description="Fewest finished jobs in the window before the guard can trip."
    )


class JobTypeSettings(_Model):
    topic: str | None = Field(
        None, description="Main topic of the job type; default `jobs.<job_type>`."
    )
    partitions: int = Field(
        6, ge=1, le=10_000,
        description="Partitions of each of the job type's topics (main, retry, DLQ, ledger): "
        "the most workers that can share the job type.",
    )
    retry_tiers: tuple[DurationText, ...] = Field(
        DEFAULT_TIERS,
        description="Delays of the retry topics, strictly increasing: the first failure waits "
        "the first, and so on; the last one repeats until `max_attempts`.",
    )
    max_attempts: int = Field(
        4, ge=1, le=100,
        description="Runs of a job in all, the first included, before a transient or timeout "
        "failure goes to the DLQ.",
    )
    timeout_s: Seconds = Field(
        30.0, gt=0,
        description="How long a handler may run; past it the run is a timeout failure (an "
        "async handler is cancelled; a sync one, see `abandon_after_s`).",
    )
    # A sync handler past timeout_s cannot be stopped: its job's outcome (retry, DLQ) and its
    # key's next job wait until its thread ends, at most this much longer; then it is abandoned.
    abandon_after_s: Seconds = Field(
        60.0, ge=0,
        description="How much longer than `timeout_s` a timed-out sync handler's thread is "
        "waited for before its job is routed anyway and the thread abandoned (`0`: at once).",
    )
    ordering: Ordering = Field(
        Ordering.KEY,
        description="`key`: jobs with the same key run in offset order and failures go through "
        "the retry topics; `strict`: failures are retried in place while the partition waits.",
    )
    concurrency: int | None = Field(
        None, ge=1,
        description="Most handlers of this job type running at once in one worker; default "
        "only `worker.max_in_flight` limits them.",
    )
    rate_limit: float | None = Field(
        None, gt=0, description="Most jobs started per second in one worker; default no limit."
    )
    permanent_errors: tuple[str, ...] = Field(
        (),
        description="Exception class names, besides `PermanentError`, whose failures are "
        "permanent: to the DLQ at once, no retry.",
    )
    circuit_breaker: CircuitBreakerSettings | None = Field(
        None,
        description="Pauses the job type while its handler keeps failing and probes now and "
        "then; off unless set.",
    )
    retention_ms: Millis = Field(
        7 * 86_400_000, ge=60_000,
        description="How long the main and retry topics keep records (Kafka `retention.ms`); a "
        "retry topic keeps at least ten times its delay.",
    )
    dlq_retention_ms: Millis = Field(
        30 * 86_400_000, ge=60_000, description="How long the DLQ topic keeps records."
    )
    max_delay_s: Seconds = Field(
        365 * 86_400.0, gt=0,
        description="Longest `delay` (or `run_at` ahead of now) a delayed job may have; "
        "`publish` refuses a later one.",
    )
    history: bool = Field(
        True,
        description="Write each attempt's outcome and progress to T.history (`jobs show`, "
        "`Publisher.status`, `audit verify`); `false` saves a write per attempt, and a "
        "lookup then knows only what the ledger and T say.",
    )
    history_retention_ms: Millis = Field(
        7 * 86_400_000, ge=60_000,
        description="How long T.history keeps each job's lifecycle records (attempts, "
        "progress, results): how far back `jobstream jobs show` and `Publisher.status` see.",
    )
    result_max_bytes: int = Field(
        64 * 1024, ge=16, le=900 * 1024,
        description="Largest handler return value, as JSON, stored as the job's result; a "
        "bigger one fails the attempt as permanent, naming the limit.",
    )
    priorities: tuple[str, ...] = Field(
        (),
        description="Priority lanes, highest first, e.g. `[high, default, low]`; must include "
        "`default` (the main topic T); the others are `T.priority.<name>`. Default: no lanes "
        "(docs/priorities.md).",
    )
    lane_weights: tuple[int, ...] | None = Field(
        None,
        description="Share of starts of each lane while all have work, one positive integer "
        "per lane in `priorities` order; default 8:3:1 style (highest lane weighs most).",
    )
    fair_by: str | None = Field(
        None,
        description="Fair sharing inside each lane: `key` or `header:<name>` names a job's "
        "tenant, and the worker starts the jobs it has fetched round robin across tenants "
        "(docs/priorities.md). Default off: first in first out.",
    )
    max_in_flight_per_tenant: int | None = Field(
        None, ge=1,
        description="With `fair_by`: most jobs of one tenant running at once in one worker; "
        "default no limit.",
    )
    accept: tuple[HeaderFormat, ...] = Field(
        (HeaderFormat.JOBSTREAM,), min_length=1,
        description="Header formats the job type's records may use: `jobstream` (`js-*` "
        "headers) and/or `cloudevents` (CloudEvents binary mode, `ce_*` headers; `js-*` ones "
        "win when both are present). See docs/wire-format.md.",
    )

    @field_validator("retry_tiers")
    @classmethod
    def _tiers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        delays = [parse_duration(t) for t in v]
        if delays != sorted(delays) or len(set(delays)) != len(delays):
            raise ValueError(f"tiers must be strictly increasing, got {list(v)}")
        return v

    @field_validator("accept")
    @classmethod
    def _accept(cls, v: tuple[HeaderFormat, ...]) -> tuple[HeaderFormat, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"each format at most once, got {[str(f) for f in v]}")
        return v

    @field_validator("priorities")
    @classmethod
    def _priorities(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_priorities(v)

    @field_validator("fair_by")
    @classmethod
    def _fair_by(cls, v: str | None) -> str | None:
        return check_fair_by(v)

    @model_validator(mode="after")
    def _weights(self) -> JobTypeSettings:
        check_weights(self.priorities, self.lane_weights)
        if self.max_in_flight_per_tenant is not None and self.fair_by is None:
            raise ValueError("max_in_flight_per_tenant needs fair_by (what a tenant is)")
        return self

    @property
    def lanes(self) -> tuple[str, ...]:
        """The lanes, highest first; `("default",)` when the job type declares none."""
        return self.priorities or ("default",)

    @property
    def weights(self) -> tuple[int, ...]:
        return self.lane_weights or default_weights(len(self.lanes))

    @property
    def tier_seconds(self) -> tuple[float, ...]:
        return tuple(parse_duration(t) for t in self.retry_tiers)
