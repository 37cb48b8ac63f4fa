"""The one place that names topics. For a job type whose main topic is T:

T (new jobs; the `default` lane), T.priority.<lane> (a job type's other priority lanes),
T.retry.<delay> (one per tier), T.dlq (dead letters), T.ledger (dedup ledger),
T.history (each job's lifecycle, hash-chained), T.scheduled (delayed jobs not yet due, keyed by
job id, compacted: a tombstone once dispatched or cancelled), T.scheduled.snapshots (snapshots
of the scheduler's pending index, compacted).
"""

from __future__ import annotations

from dataclasses import dataclass

from jobstream.config.durations import format_duration, parse_duration
from jobstream.config.settings import JobTypeSettings, Ordering, Settings

RETRY_MARK = ".retry."
PRIORITY_MARK = ".priority."
DLQ_SUFFIX = ".dlq"
LEDGER_SUFFIX = ".ledger"
HISTORY_SUFFIX = ".history"
SCHEDULED_SUFFIX = ".scheduled"
SNAPSHOTS_SUFFIX = ".scheduled.snapshots"
AUDIT_TOPIC = "jobstream.audit"
SCHEDULES_TOPIC = "jobstream.schedules"
BATCHES_TOPIC = "jobstream.batches"


def main_topic(job_type: str, cfg: JobTypeSettings | None = None) -> str:
    return (cfg.topic if cfg and cfg.topic else None) or f"jobs.{job_type}"


def retry_topic(main: str, delay_s: float) -> str:
    return f"{main}{RETRY_MARK}{format_duration(delay_s)}"


def lane_topic(main: str, lane: str) -> str:
    """The topic of a priority lane: T itself for `default`, T.priority.<lane> otherwise."""
    return main if lane == "default" else f"{main}{PRIORITY_MARK}{lane}"


def dlq_topic(main: str) -> str:
    return main + DLQ_SUFFIX


def ledger_topic(main: str) -> str:
    return main + LEDGER_SUFFIX


def history_topic(main: str) -> str:
    return main + HISTORY_SUFFIX


def scheduled_topic(main: str) -> str:
    return main + SCHEDULED_SUFFIX


def snapshots_topic(main: str) -> str:
    return main + SNAPSHOTS_SUFFIX


def base_of(topic: str) -> str:
    """The main topic a tier, DLQ, ledger or history topic belongs to (the topic itself
    otherwise)."""
    for mark in (RETRY_MARK, PRIORITY_MARK):
        if mark in topic:
            return topic.rsplit(mark, 1)[0]
    suffixes = (DLQ_SUFFIX, LEDGER_SUFFIX, HISTORY_SUFFIX, SCHEDULED_SUFFIX, SNAPSHOTS_SUFFIX)
    for suffix in suffixes:
        if topic.endswith(suffix):
            return topic[: -len(suffix)]
    return topic


def tier_delay(topic: str) -> float | None:
    """Delay in seconds of a retry-tier topic, None for any other topic."""
    if RETRY_MARK not in topic:
        return None
    return parse_duration(topic.rsplit(RETRY_MARK, 1)[1])


@dataclass(frozen=True)
class TopicSpec:
    name: str
    role: str  # main | lane | retry | dlq | ledger | history | scheduled | snapshots
    partitions: int
    config: dict[str, str]


# The audit log of dead-letter operations: one partition keeps it in order, kept forever.
AUDIT_SPEC = TopicSpec(AUDIT_TOPIC, "audit", 1, {"cleanup.policy": "delete", "retention.ms": "-1"})
# The state of the recurring schedules, one record per schedule name (last slot fired, paused,
# version): one partition, whose owner fires every schedule; compacted, kept forever.
SCHEDULES_SPEC = TopicSpec(SCHEDULES_TOPIC, "schedules", 1, {"cleanup.policy": "compact"})
# Batches (docs/workflows.md): key = batch id (the batch record) or <batch id>/<member id> (a
# member's final outcome); every key of a batch in the partition its id picks (not the key's
# hash), whose owner counts and runs the callback. Compacted, kept forever.
BATCHES_PARTITIONS = 6
BATCHES_SPEC = TopicSpec(BATCHES_TOPIC, "batches", BATCHES_PARTITIONS,
                         {"cleanup.policy": "compact"})


@dataclass(frozen=True)
class JobTopics:
    job_type: str
    main: str
    retries: tuple[str, ...]  # in tier order
    tier_seconds: tuple[float, ...]
    dlq: str
    ledger: str
    history: str
    scheduled: str
    snapshots: str
    lanes: tuple[str, ...] = ()  # lane topics (T among them), highest lane first; () no lanes

    @property
    def consumed(self) -> tuple[str, ...]:
        """Topics a worker reads jobs from."""
        return (*(self.lanes or (self.main,)), *self.retries)


def job_topics(job_type: str, cfg: JobTypeSettings) -> JobTopics:
    main = main_topic(job_type, cfg)
    tiers = () if cfg.ordering is Ordering.STRICT else cfg.tier_seconds
    return JobTopics(
        job_type=job_type,
        main=main,
        retries=tuple(retry_topic(main, d) for d in tiers),
        tier_seconds=tiers,
        dlq=dlq_topic(main),
        ledger=ledger_topic(main),
        history=history_topic(main),
        scheduled=scheduled_topic(main),
        snapshots=snapshots_topic(main),
        lanes=tuple(lane_topic(main, n) for n in cfg.priorities),
    )


def topic_plan(job_type: str, settings: Settings) -> list[TopicSpec]:
    cfg = settings.job(job_type)
    t = job_topics(job_type, cfg)
    n = cfg.partitions
    ttl_ms = str(int(settings.worker.ledger_ttl_s * 1000))
    plan = [
        TopicSpec(
            t.main, "main", n, {"cleanup.policy": "delete", "retention.ms": str(cfg.retention_ms)}
        )
    ]
    plan += [  # the other priority lanes: like T, same partition count (key order)
        TopicSpec(name, "lane", n, plan[0].config) for name in t.lanes if name != t.main
    ]
    # A retry record must outlive its delay by a wide margin, whatever the main retention is.
    for name, delay in zip(t.retries, t.tier_seconds, strict=True):
        keep = max(cfg.retention_ms, int(delay * 1000) * 10)
        plan.append(
            TopicSpec(name, "retry", n, {"cleanup.policy": "delete", "retention.ms": str(keep)})
        )
    plan.append(
        TopicSpec(
            t.dlq, "dlq", n, {"cleanup.policy": "delete", "retention.ms": str(cfg.dlq_retention_ms)}
        )
    )
    plan.append(
        TopicSpec(
            t.ledger, "ledger", n, {"cleanup.policy": "compact,delete", "retention.ms": ttl_ms}
        )
    )
    plan.append(
        TopicSpec(
            t.history, "history", n,
            {"cleanup.policy": "delete", "retention.ms": str(cfg.history_retention_ms)},
        )
    )
    # Compacted only: a pending job must stay until dispatched or cancelled, however far ahead
    # (max_delay); its tombstone goes after delete.retention.ms (1 day by default).
    plan.append(TopicSpec(t.scheduled, "scheduled", n, {"cleanup.policy": "compact"}))
    # Only the latest snapshot per partition matters: older ones are compacted away soon, as a
    # restore reads the partition from its beginning.
    plan.append(TopicSpec(t.snapshots, "snapshots", n, {
        "cleanup.policy": "compact", "segment.ms": "600000", "min.cleanable.dirty.ratio": "0.1",
    }))
    return plan
