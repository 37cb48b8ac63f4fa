"""FakeAdminClient: the AdminClient calls jobstream makes (topics, configs, metadata) on the
in-memory cluster, answering with the real futures and config classes."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AlterConfigOpType,
    BrokerMetadata,
    ClusterMetadata,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    PartitionMetadata,
    TopicMetadata,
)

from tests.support import fake_errors as fe
from tests.support.fake_log import TOPIC_DEFAULTS, PartitionLog, Topic

if TYPE_CHECKING:
    from tests.support.fake_kafka import FakeCluster

# What the local broker (consumers/broker.py) gives a consumer-protocol group.
GROUP_DEFAULTS = {"consumer.session.timeout.ms": "45000", "consumer.heartbeat.interval.ms": "5000"}


def _done(result: Any = None, err: KafkaError | None = None) -> Future[Any]:
    f: Future[Any] = Future()
    if err is not None:
        f.set_exception(KafkaException(err))
    else:
        f.set_result(result)
    return f


class FakeAdminClient:
    def __init__(self, conf: dict[str, Any], *, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.conf = dict(conf)
        self.error_cb: Callable[[KafkaError], None] | None = conf.get("error_cb")
        self._outage_seen = 0
        cluster.clients.append(self)

    def poll(self, timeout: float | None = None) -> int:
        self.cluster.report_outage(self)
        return 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        return self.cluster.metadata(topic, timeout)

    def _down(self) -> KafkaError | None:
        if self.cluster.down:
            return fe.error(KafkaError._TIMED_OUT, "Failed while waiting for controller")
        return None

    def create_topics(
        self, new_topics: list[NewTopic], operation_timeout: float = 0, **_: Any
    ) -> dict[str, Future[Any]]:
        c = self.cluster
        out: dict[str, Future[Any]] = {}
        with c.lock:
            for nt in new_topics:
                err = self._down()
                if err is None and nt.topic in c.topics:
                    err = fe.error(
                        KafkaError.TOPIC_ALREADY_EXISTS, f"Topic '{nt.topic}' already exists."
                    )
                if err is None:
                    c.create_topic(nt.topic, nt.num_partitions, dict(nt.config or {}))
                out[nt.topic] = _done(None, err)
        return out

    def delete_topics(self, topics: list[str], **_: Any) -> dict[str, Future[Any]]:
        c = self.cluster
        out: dict[str, Future[Any]] = {}
        with c.lock:
            for name in topics:
                err = self._down()
                if err is None and name not in c.topics:
                    err = fe.error(KafkaError.UNKNOWN_TOPIC_OR_PART)
                if err is None:
                    c.delete_topic(name)
                out[name] = _done(None, err)
        return out

    def create_partitions(
        self, new_partitions: list[NewPartitions], **_: Any
    ) -> dict[str, Future[Any]]:
        c = self.cluster
        out: dict[str, Future[Any]] = {}
        with c.lock:
            for np in new_partitions:
                t = c.topics.get(np.topic)
                err = self._down()
                if err is None and t is None:
                    err = fe.error(KafkaError.UNKNOWN_TOPIC_OR_PART)
                elif err is None and t is not None and np.new_total_count <= len(t.partitions):
                    err = fe.error(
                        KafkaError.INVALID_PARTITIONS,
                        f"Topic currently has {len(t.partitions)} partitions, which is higher "
                        f"than or equal to the requested {np.new_total_count}.",
                    )
                if err is None and t is not None:
                    t.partitions += [
                        PartitionLog() for _ in range(np.new_total_count - len(t.partitions))
                    ]
                out[np.topic] = _done(None, err)
        return out

    def describe_configs(
        self, resources: list[ConfigResource], **_: Any
    ) -> dict[ConfigResource, Future[Any]]:
        c = self.cluster
        out: dict[ConfigResource, Future[Any]] = {}
        with c.lock:
            for res in resources:
                err = self._down()
                entries: dict[str, ConfigEntry] = {}
                if err is None and res.restype == ConfigResource.Type.TOPIC:
                    t = c.topics.get(res.name)
                    if t is None:
                        err = fe.error(KafkaError.UNKNOWN_TOPIC_OR_PART)
                    else:
                        entries = _entries(t.config, TOPIC_DEFAULTS)
                elif err is None and res.restype == ConfigResource.Type.GROUP:
                    conf = {**GROUP_DEFAULTS, **c.group_configs.get(res.name, {})}
                    entries = _entries(conf, GROUP_DEFAULTS)
                elif err is None:
                    conf = dict(c.broker_config)
                    entries = _entries(conf, conf)
                out[res] = _done(entries, err)
        return out

    def incremental_alter_configs(
        self, resources: list[ConfigResource], **_: Any
    ) -> dict[ConfigResource, Future[Any]]:
        c = self.cluster
        out: dict[ConfigResource, Future[Any]] = {}
        with c.lock:
            for res in resources:
                err = self._down()
                t: Topic | None = c.topics.get(res.name)
                if err is None and (res.restype != ConfigResource.Type.TOPIC or t is None):
                    err = fe.error(KafkaError.UNKNOWN_TOPIC_OR_PART)
                if err is None and t is not None:
                    for e in res.incremental_configs:
                        if e.incremental_operation == AlterConfigOpType.DELETE:
                            t.config[e.name] = TOPIC_DEFAULTS.get(e.name, "")
                        else:
                            t.config[e.name] = str(e.value)
                out[res] = _done(None, err)
        return out


def _entries(conf: dict[str, str], defaults: dict[str, str]) -> dict[str, ConfigEntry]:
    out = {}
    for name, value in sorted(conf.items()):
        default = defaults.get(name) == value
        source = ConfigSource.DEFAULT_CONFIG if default else ConfigSource.DYNAMIC_TOPIC_CONFIG
        out[name] = ConfigEntry(name, value, source=source, is_default=default)
    return out


def cluster_metadata(topics: dict[str, Topic], brokers: int, topic: str | None) -> ClusterMetadata:
    """What list_topics returns: every topic (or the one asked for, with an error when it does
    not exist), partition p led by broker p % brokers + 1."""
    md = ClusterMetadata()
    vars(md).update(cluster_id="fake-cluster", controller_id=1, orig_broker_id=1,
                    orig_broker_name="fake:9092/1")
    for i in range(1, brokers + 1):
        b = BrokerMetadata()
        vars(b).update(id=i, host="fake", port=9091 + i)
        md.brokers[i] = b
    for name in sorted(topics) if topic is None else [topic]:
        tm = TopicMetadata()
        tm.topic = name
        t = topics.get(name)
        if t is None:
            tm.error = fe.error(KafkaError.UNKNOWN_TOPIC_OR_PART)
        for p in range(len(t.partitions) if t else 0):
            pm = PartitionMetadata()
            leader = p % brokers + 1
            pm.id, pm.leader, pm.replicas, pm.isrs = p, leader, [leader], [leader]
            tm.partitions[p] = pm
        md.topics[name] = tm
    return md
