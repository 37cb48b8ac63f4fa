"""`jobstream topics apply|describe`: create or check every topic of the plan, idempotently."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings
from jobstream.config.topics import (
    AUDIT_SPEC,
    BATCHES_SPEC,
    SCHEDULES_SPEC,
    TopicSpec,
    topic_plan,
)


class TopicPlanError(RuntimeError):
    """The live topics disagree with the plan in a way we refuse to fix silently."""


@dataclass(frozen=True)
class TopicState:
    spec: TopicSpec
    exists: bool
    partitions: int | None
    drift: dict[str, tuple[str | None, str]]  # config key -> (live, planned)
    action: str  # created | ok | updated | partition_mismatch | missing


def full_plan(settings: Settings, job_types: list[str]) -> list[TopicSpec]:
    plan: list[TopicSpec] = []
    for jt in job_types:
        plan += topic_plan(jt, settings)
    plan.append(AUDIT_SPEC)
    plan.append(SCHEDULES_SPEC)
    plan.append(BATCHES_SPEC)
    return plan


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings.kafka))


def group_session_ms(settings: Settings, group: str, timeout: float = 10.0) -> int | None:
    """The session timeout the broker gives a consumer-protocol (KIP-848) group, or None when
    it cannot be read (no DescribeConfigs right on the group, an older broker)."""
    try:
        admin = _admin(settings)  # held until the answer came: a dropped client cancels it
        res = ConfigResource(ConfigResource.Type.GROUP, group)
        entries = admin.describe_configs([res], request_timeout=timeout)[res]
        value = entries.result(timeout=timeout)["consumer.session.timeout.ms"].value
        return int(value) if value else None
    except Exception:
        return None


def group_assignor(settings: Settings, group: str, timeout: float = 5.0) -> str | None:
    """The partition assignor a consumer group's members agreed on (e.g. 'range'), or None when
    it cannot be read."""
    try:
        admin = _admin(settings)
        desc = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
        return desc.result(timeout=timeout).partition_assignor or None
    except Exception:
        return None


def describe(settings: Settings, plan: list[TopicSpec], timeout: float = 15.0) -> list[TopicState]:
    admin = _admin(settings)
    try:
        md = admin.list_topics(timeout=timeout)
    except KafkaException:
        raise TopicPlanError(f"broker unreachable at {settings.kafka.bootstrap_servers}") from None
    states = []
    existing = [s for s in plan if s.name in md.topics]
    live_configs: dict[str, dict[str, str | None]] = {}
    if existing:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in existing]
        for res, fut in admin.describe_configs(resources, request_timeout=timeout).items():
            entries = fut.result(timeout=timeout)
            live_configs[res.name] = {k: e.value for k, e in entries.items()}
    for spec in plan:
        if spec.name not in md.topics:
            states.append(TopicState(spec, False, None, {}, "missing"))
            continue
        n = len(md.topics[spec.name].partitions)
        live = live_configs.get(spec.name, {})
        drift = {k: (live.get(k), v) for k, v in spec.config.items() if live.get(k) != v}
        action = "partition_mismatch" if n != spec.partitions else ("drift" if drift else "ok")
        states.append(TopicState(spec, True, n, drift, action))
    return states


def ensure(settings: Settings, spec: TopicSpec, timeout: float = 20.0) -> None:
    """Create one internal topic when it is missing (a worker's owner thread, at its start) and
    wait until it can be used; one that exists is left as it is (`topics apply` aligns configs).
    KafkaException when it can be neither found nor created (no right to); TopicPlanError when
    it was created but is not usable within `timeout`."""
    admin = _admin(settings)
    if spec.name in admin.list_topics(timeout=15).topics:
        return
    fut = admin.create_topics([NewTopic(spec.name, spec.partitions, 1, config=spec.config)],
                              request_timeout=15)[spec.name]
    try:
        fut.result(timeout=timeout)
    except KafkaException as e:
        err = e.args[0] if e.args else None
        if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise
    _wait_usable(admin, [spec.name], timeout)


def apply(settings: Settings, plan: list[TopicSpec], timeout: float = 30.0) -> list[TopicState]:
    """Create missing topics and align configs. A partition count that differs from the plan
    is never changed silently: raise, naming each topic, and change nothing."""
    states = describe(settings, plan, timeout)
    mismatched = [s for s in states if s.action == "partition_mismatch"]
    if mismatched:
        lines = [
            f"  {s.spec.name}: has {s.partitions} partitions, plan says {s.spec.partitions}"
            for s in mismatched
        ]
        raise TopicPlanError(
            "partition counts differ from the plan; change them deliberately (key order "
            "depends on them) or fix the settings:\n" + "\n".join(lines)
        )
    admin = _admin(settings)
    missing = [s.spec for s in states if not s.exists]
    out: list[TopicState] = []
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, 1, config=s.config) for s in missing],
            request_timeout=timeout,
        )
        for name, fut in futures.items():
            try:
                fut.result(timeout=timeout)
            except KafkaException as e:
                err = e.args[0]
                if not (
                    isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS
                ):
                    raise TopicPlanError(f"cannot create {name}: {err}") from None
        _wait_usable(admin, [s.name for s in missing], timeout)
    for s in states:
        if not s.exists:
            out.append(TopicState(s.spec, True, s.spec.partitions, {}, "created"))
        elif s.drift:
            # Incremental SET keeps overrides the plan does not mention (an operator's own).
            res = ConfigResource(
                ConfigResource.Type.TOPIC,
                s.spec.name,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in s.spec.config.items()
                ],
            )
            for fut in admin.incremental_alter_configs([res]).values():
                fut.result(timeout=timeout)
            out.append(TopicState(s.spec, True, s.partitions, s.drift, "updated"))
        else:
            out.append(s)
    return out


def _wait_usable(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Creation is acknowledged by the controller before every broker serves the topic: wait
    until each can be described, so that `apply` returning means the topics can be used."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in pending]
        still = []
        for res, fut in admin.describe_configs(resources, request_timeout=timeout).items():
            try:
                fut.result(timeout=timeout)
            except KafkaException:
                still.append(res.name)
        pending = still
        if pending:
            if time.monotonic() > deadline:
                raise TopicPlanError(f"topics created but not usable after {timeout}s: {pending}")
            time.sleep(0.1)
