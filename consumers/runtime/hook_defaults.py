"""The default hooks (consumers/runtime/hooks.py): the circuit breaker and rate limit per job
type, the DLQ guard, metrics, lifecycle logging (`received` / `started` only at DEBUG) and
tracing. `default_hooks` builds the list every worker starts with."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from jobstream.config.durations import now_ms
from jobstream.config.logging import JsonLines, json_pairs, json_value
from jobstream.config.settings import JobTypeSettings, Settings
from jobstream.consumers.context import LOG_FIELD_NAMES, log_fields, log_pairs
from jobstream.consumers.errors import DlqGuardTripped
from jobstream.consumers.metrics import Metrics
from jobstream.consumers.runtime.hooks import Finished, Handler, Hook, Verdict
from jobstream.consumers.runtime.protection import DlqGuard, JobTypeGate
from jobstream.consumers.runtime.tracing import Tracing
from jobstream.consumers.runtime.types import TP, Job, Outcome


def ms(duration: float | None) -> float | None:
    return None if duration is None else round(duration * 1000, 3)


def _names(tps: Sequence[TP]) -> list[str]:
    return [f"{t}[{p}]" for t, p in tps]


class Gates(Hook):
    """Circuit breaker and rate limit per job type (consumers/runtime/protection.py): a job
    whose type's gate does not admit it now is deferred (its partitions pause meanwhile)."""

    def __init__(self, cfg: dict[str, JobTypeSettings], metrics: Metrics, log: Any) -> None:
        self.gates = {jt: JobTypeGate.for_job_type(c) for jt, c in cfg.items()}
        self.metrics = metrics
        self.log = log

    def before_start(self, job: Job, now: float) -> Verdict:
        return Verdict.RUN if self.gates[job.job_type].try_start(now) else Verdict.DEFER

    def on_tick(self, now: float) -> None:
        for jt, gate in self.gates.items():
            for state in gate.transitions(now):
                self.metrics.set_breaker(jt, state.value)
                self.log.warning("circuit_" + state.value, job_type=jt)

    def holding(self, now: float) -> set[str]:
        """Job types whose gate does not accept jobs now."""
        return {jt for jt, g in self.gates.items() if not g.accepting(now)}


_GUARDED = (Outcome.SUCCEEDED, Outcome.RETRIED, Outcome.DEAD_LETTERED)


class DlqGuardHook(Hook):
    """worker.dlq_guard: count routing decisions; refuse a dead letter that would pass the
    limit, and stop (its offset stays unfinished, so the next owner gets the job, not the
    DLQ)."""

    def __init__(self, max_ratio: float, window_s: float, min_jobs: int) -> None:
        self.guard = DlqGuard(max_ratio, window_s, min_jobs)
        self.max_ratio, self.window_s = max_ratio, window_s

    def before_send(self, job: Job, outcome: Outcome) -> None:
        if outcome not in _GUARDED:
            return
        now = time.monotonic()
        dead_letter = outcome is Outcome.DEAD_LETTERED
        self.guard.record(dead_letter, now)
        if dead_letter and self.guard.tripped(now):
            raise DlqGuardTripped(
                f"more than {self.max_ratio:.0%} of the jobs in the last {self.window_s:g}s "
                "were dead-lettered (worker.dlq_guard); stopping so a bad deploy does not "
                "dead-letter everything"
            )


class MetricsHook(Hook):
    """The jobs counter and durations per outcome, retries per tier, rebalances."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def after_outcome(self, f: Finished) -> None:
        if f.outcome is Outcome.FAILED:
            if f.in_place:  # no record follows: this is the attempt's outcome
                self.metrics.finished(f.job_type, "failed", f.duration_s, None)
            return
        if f.outcome in (Outcome.DEDUPLICATED, Outcome.CANCELLED):
            self.metrics.finished(f.job_type, f.outcome.value, None, None)
            return
        job = f.job
        latency = (now_ms() - job.enqueued_at_ms) / 1000 if job.enqueued_at_ms else None
        self.metrics.finished(f.job_type, f.outcome.value, f.duration_s, latency)
        if f.outcome is Outcome.RETRIED:
            self.metrics.retried(f.job_type, f.tier or "")

    def on_assign(self, tps: Sequence[TP]) -> None:
        self.metrics.rebalances.inc()

    def on_revoke(self, tps: Sequence[TP], lost: bool) -> None:
        if not lost:
            self.metrics.rebalances.inc()


_OUTCOME_KEYS = ("duration_ms", "tier", "category", "error_class", "error", "detail")


class LifecycleLog(Hook):
    """At INFO one event per attempt's outcome (with its duration and every id), and the
    partitions coming and going."""

    def __init__(self, log: Any) -> None:
        self.log = log
        # Each line made in one string (config/logging.py JsonLines) when the log is the
        # worker's JSON log: structlog's per-call work was most of a fast job's logging cost.
        self.lines = JsonLines(log, (*LOG_FIELD_NAMES, *_OUTCOME_KEYS))

    def after_outcome(self, f: Finished) -> None:
        if self.lines.usable and self._fast(f):
            return
        fields = log_fields(f.job)
        if f.outcome is Outcome.FAILED:
            failure = f.failure
            assert failure is not None
            (self.log.warning if f.dead else self.log.info)(
                "failed",
                **fields,
                category=failure.category.value,
                error_class=failure.error_class,
                error=failure.message,
                duration_ms=ms(f.duration_s),
            )
        elif f.outcome is Outcome.DEDUPLICATED:
            self.log.info("deduplicated", **fields)
        elif f.outcome is Outcome.CANCELLED:
            self.log.info("cancelled", **fields, detail="cancelled by `jobs cancel`: not run")
        elif f.outcome is Outcome.RETRIED:
            self.log.info("retried", **fields, tier=f.tier, duration_ms=ms(f.duration_s))
        elif f.outcome is Outcome.DEAD_LETTERED:  # WARNING: a WARNING filter must still show it
            self.log.warning("dead_lettered", **fields, duration_ms=ms(f.duration_s))
        else:
            self.log.info(f.outcome.value, **fields, duration_ms=ms(f.duration_s))

    def _fast(self, f: Finished) -> bool:
        """The outcomes of the per-job path, same lines as after_outcome's: False when the
        line was not written (the usual way then)."""
        outcome = f.outcome
        if outcome is Outcome.SUCCEEDED:
            extra = f", \"duration_ms\": {json_value(ms(f.duration_s))}"
            return self.lines.write("info", "succeeded", log_pairs(f.job) + extra)
        if outcome is Outcome.DEDUPLICATED:
            return self.lines.write("info", "deduplicated", log_pairs(f.job))
        if outcome is Outcome.RETRIED:
            extra = json_pairs((("tier", f.tier), ("duration_ms", ms(f.duration_s))))
            return self.lines.write("info", "retried", f"{log_pairs(f.job)}, {extra}")
        return False

    def on_assign(self, tps: Sequence[TP]) -> None:
        self.log.info("assigned", partitions=_names(tps))

    def on_revoke(self, tps: Sequence[TP], lost: bool) -> None:
        if lost:
            self.log.warning("partitions_lost", partitions=_names(tps))
        else:
            self.log.info("revoked", partitions=_names(tps))


class DebugLifecycleLog(Hook):
    """`received` and `started` per job: in the default list only at log level DEBUG (two
    lines per job were a large share of a fast handler's cost)."""

    def __init__(self, log: Any) -> None:
        self.log = log

    def on_receive(self, job: Job) -> None:
        self.log.debug("received", **log_fields(job))

    def after_start(self, job: Job) -> None:
        self.log.debug("started", **log_fields(job))


class TracingHook(Hook):
    """OpenTelemetry spans around handlers (consumers/runtime/tracing.py)."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    def wrap(self, job: Job, func: Handler, is_async: bool) -> Handler:
        return self.tracing.wrap(func, is_async, job)


def default_hooks(
    settings: Settings, cfg: dict[str, JobTypeSettings], metrics: Metrics, log: Any
) -> list[Hook]:
    hooks: list[Hook] = [Gates(cfg, metrics, log)]
    guard = settings.worker.dlq_guard
    if guard is not None:
        hooks.append(DlqGuardHook(guard.max_ratio, guard.window_s, guard.min_jobs))
    hooks += [MetricsHook(metrics), LifecycleLog(log)]
    if settings.log.level == "DEBUG":
        hooks.append(DebugLifecycleLog(log))
    tracing = Tracing.from_environment()
    if tracing is not None:
        hooks.append(TracingHook(tracing))
    return hooks
