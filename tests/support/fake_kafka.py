"""An in-memory Kafka for unit tests: a FakeCluster and its FakeConsumer, FakeProducer and
FakeAdminClient, with confluent_kafka's method names and signatures, its real TopicPartition,
Message, KafkaError and KafkaException, and the behaviour observed against a real broker
(tests/integration/test_fake_kafka_contract.py runs the same scenarios on both and compares).

    cluster = FakeCluster()
    cluster.create_topic("jobs.x", partitions=2)
    consumer = cluster.consumer({"group.id": "g", ...})   # or patch_clients(monkeypatch, cluster)
    cluster.rebalance("g", {consumer: [("jobs.x", 0)]})    # the test decides who owns what
    cluster.lose(consumer)                                 # ... or that a session expired
    cluster.fail_next_produce("jobs.x.dlq", KafkaError.MSG_SIZE_TOO_LARGE)
    cluster.down = True                                    # every broker unreachable

Calls that wait (poll, flush, committed, ... and every call during an outage) wait their
timeout times `block_scale` (0: never wait) or until something they wait for happens.

Not modelled: compaction, retention by time, replication, quotas, static membership,
offsets_for_times, store_offsets, unknown configuration keys (a real client refuses them),
a consumer that stops polling past max.poll.interval.ms (use lose()), regex subscriptions
picking up new topics, and the broker's timing: records land at once, markers are written
before commit_transaction returns (a broker may take a moment), a record to an unknown topic
fails at the next poll (librdkafka waits for metadata first). max.message.bytes is checked
per record (a broker checks a whole batch, so records produced together can fail together).
A fatal error is raised from poll/flush as a KafkaException (the binding may wrap it in a
SystemError when a callback is pending; commit.kafka_exception unwraps both)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import ClusterMetadata

from tests.support import fake_errors as fe
from tests.support.fake_admin import FakeAdminClient, cluster_metadata
from tests.support.fake_consumer import FakeConsumer
from tests.support.fake_group import Group, GroupMetadata
from tests.support.fake_log import TP, Headers, PartitionLog, Record, Topic, Txn, record_message
from tests.support.fake_log import pick_partition as _pick
from tests.support.fake_producer import FakeProducer
from tests.support.fake_txn import TxnCoordinator

__all__ = [
    "FakeAdminClient",
    "FakeCluster",
    "FakeConsumer",
    "FakeProducer",
    "GroupMetadata",
    "patch_clients",
]

Member = FakeConsumer | str
Partitions = Iterable[TopicPartition | TP]


class FakeCluster:
    def __init__(self, brokers: int = 1, block_scale: float = 1.0, auto_rebalance: bool = True):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.brokers = brokers
        self.block_scale = block_scale
        self.auto_rebalance = auto_rebalance
        self.topics: dict[str, Topic] = {}
        self.groups: dict[str, Group] = {}
        self.group_configs: dict[str, dict[str, str]] = {}
        self.broker_config: dict[str, str] = {"transaction.max.timeout.ms": "900000"}
        self.clients: list[Any] = []
        self.outages = 0
        self._down = False
        self.txns = TxnCoordinator(self)
        self._produce_failures: list[list[Any]] = []  # [topic, partition|None, code, count]
        self._commit_failures: dict[str, list[int]] = {}
        self._txn_failures: list[tuple[str | None, str, KafkaError]] = []

    # -- clients -------------------------------------------------------------------------------

    def consumer(self, conf: dict[str, Any]) -> FakeConsumer:
        return FakeConsumer(conf, cluster=self)

    def producer(self, conf: dict[str, Any]) -> FakeProducer:
        return FakeProducer(conf, cluster=self)

    def admin(self, conf: dict[str, Any] | None = None) -> FakeAdminClient:
        return FakeAdminClient(conf or {}, cluster=self)

    # -- topics and records ----------------------------------------------------------------------

    def create_topic(
        self, name: str, partitions: int = 1, config: dict[str, str] | None = None
    ) -> Topic:
        with self.lock:
            if name in self.topics:
                raise ValueError(f"topic {name} exists already")
            t = self.topics[name] = Topic(name, partitions, config)
            return t

    def delete_topic(self, name: str) -> None:
        with self.lock:
            del self.topics[name]
            for g in self.groups.values():
                g.committed = {tp: o for tp, o in g.committed.items() if tp[0] != name}

    def log(self, tp: TP) -> PartitionLog | None:
        t = self.topics.get(tp[0])
        return t.partitions[tp[1]] if t is not None and 0 <= tp[1] < len(t.partitions) else None

    def partition_for(self, partitioner: str, topic: str, key: bytes | None, seq: int) -> int:
        return _pick(partitioner, key, len(self.topics[topic].partitions), seq)

    def append(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        ts: tuple[int, int],
        txn: Txn | None,
    ) -> Record:
        log = self.topics[topic].partitions[partition]
        rec = log.append(key, value, headers, ts, txn)
        if txn is not None:
            txn.first_offsets.setdefault((topic, partition), rec.offset)
        self.changed.notify_all()
        return rec

    def records(self, topic: str, partition: int | None = None, committed: bool = True
                ) -> list[Message]:
        """What a reader from the beginning sees (read_committed unless committed=False)."""
        with self.lock:
            t = self.topics[topic]
            parts = range(len(t.partitions)) if partition is None else [partition]
            out = []
            for p in parts:
                log = t.partitions[p]
                for rec in log.records[log.low : log.end(committed)]:
                    if rec.visible(committed):
                        out.append(record_message((topic, p), rec))
            return out

    def watermark_offsets(self, tp: TP, read_committed: bool) -> tuple[int, int]:
        """A ListOffsets request: (low, high), high being the stable offset for read_committed."""
        with self.lock:
            log = self.log(tp)
            if log is None or self.down:
                fe.fail(KafkaError._UNKNOWN_PARTITION,
                        "Failed to get watermark offsets: Local: Unknown partition")
            self.expire_transactions()
            return (log.low, log.end(read_committed))

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        with self.lock:
            log = self.topics[topic].partitions[partition]
            return (log.low, log.high)

    def delete_records(self, topic: str, partition: int, before: int) -> None:
        """Move the low watermark (what retention or delete_records does)."""
        with self.lock:
            log = self.topics[topic].partitions[partition]
            log.low = max(log.low, min(before, log.high))

    def metadata(self, topic: str | None, timeout: float | None) -> ClusterMetadata:
        """A Metadata request (list_topics): brokers, topics, partitions and their leaders."""
        with self.lock:
            if self.down:
                self.wait_until(self.deadline(timeout), lambda: not self.down)
                if self.down:
                    fe.fail(KafkaError._TRANSPORT,
                            "Failed to get metadata: Local: Broker transport failure")
            return cluster_metadata(self.topics, self.brokers, topic)

    # -- groups ------------------------------------------------------------------------------------

    def group(self, group_id: str, protocol: str = "eager") -> Group:
        g = self.groups.get(group_id)
        if g is None:
            g = self.groups[group_id] = Group(group_id, protocol, self.auto_rebalance)
        return g

    def committed(self, group_id: str) -> dict[TP, int]:
        with self.lock:
            return dict(self.group(group_id).committed)

    def membership_changed(self, group_id: str) -> None:
        g = self.group(group_id)
        if g.auto and g.members:
            g.rebalance(g.auto_plan({n: len(t.partitions) for n, t in self.topics.items()}))
        self.changed.notify_all()

    def rebalance(self, group_id: str, plan: dict[Member, Partitions]) -> None:
        """Hand out this assignment now (members left out get nothing); each member sees its
        revoke and assign from its next poll, as from a broker's rebalance."""
        with self.lock:
            g = self.groups[group_id]
            by_id: dict[str, set[TP]] = {}
            for member, tps in plan.items():
                mid = member if isinstance(member, str) else member.memberid()
                if mid not in g.members:
                    raise ValueError(f"{member!r} is not a member of group {group_id}")
                by_id[mid] = {(p.topic, p.partition) if isinstance(p, TopicPartition) else p
                              for p in tps}
            g.rebalance(by_id)
            self.changed.notify_all()

    def lose(self, member: FakeConsumer) -> None:
        """Its session expired: the group goes on without it (the others rebalance); it sees
        on_lost (on_revoke when it has none) from its next poll, then joins again."""
        with self.lock:
            if member.member is None:
                raise ValueError(f"{member!r} is not in a group")
            member.lose()
            self.membership_changed(member.group_id)

    def commit_offsets(
        self, group_id: str, member_id: str, generation: int, offsets: dict[TP, int]
    ) -> KafkaError | None:
        """A consumer's offset commit, as the group coordinator answers it."""
        if not offsets:
            return fe.error(KafkaError._NO_OFFSET)
        if self.down:
            return fe.error(KafkaError._WAIT_COORD, "Commit failed: Local: Waiting for coordinator")
        g = self.group(group_id)
        code = self.take_commit_failure(group_id)
        if code is None:
            code = g.check_commit(member_id, generation, transactional=False)
        if code is not None:
            return fe.error(code, f"Commit failed: {fe.text(code)}")
        g.committed.update(offsets)
        return None

    def expire_transaction(self, transactional_id: str) -> None:
        """What the broker does to a transaction open past transaction.timeout.ms: abort it and
        bump the epoch, so its producer is fenced at its next call."""
        with self.lock:
            self.txns.claim(transactional_id)
            self.changed.notify_all()

    def expire_transactions(self) -> None:
        self.txns.expire()

    # -- injected failures ------------------------------------------------------------------------

    def fail_next_produce(
        self, topic: str, error_code: int, count: int = 1, partition: int | None = None
    ) -> None:
        """The next `count` records written to the topic (partition) fail with this error in
        their delivery report; in a transaction, the transaction must then be aborted."""
        with self.lock:
            self._produce_failures.append([topic, partition, error_code, count])

    def take_produce_failure(self, topic: str, partition: int) -> int | None:
        for f in self._produce_failures:
            if f[0] == topic and f[1] in (None, partition) and f[3] > 0:
                f[3] -= 1
                return int(f[2])
        return None

    def fail_commit(self, group_id: str, error_code: int, count: int = 1) -> None:
        """The next `count` offset commits of the group's consumers fail with this error."""
        with self.lock:
            self._commit_failures.setdefault(group_id, []).extend([error_code] * count)

    def take_commit_failure(self, group_id: str) -> int | None:
        pending = self._commit_failures.get(group_id)
        return pending.pop(0) if pending else None

    def fail_transaction(
        self,
        call: str,
        error_code: int,
        *,
        transactional_id: str | None = None,
        fatal: bool = False,
        retriable: bool = False,
        txn_requires_abort: bool = False,
        reason: str | None = None,
    ) -> None:
        """The next `call` ("init_transactions", "begin_transaction",
        "send_offsets_to_transaction", "commit_transaction", "abort_transaction") of a
        producer (with this transactional id, or any) raises this error. A fatal one leaves
        the producer unusable, one that requires an abort leaves the transaction abortable."""
        err = fe.error(error_code, reason, fatal=fatal, retriable=retriable,
                       txn_requires_abort=txn_requires_abort)
        with self.lock:
            self._txn_failures.append((transactional_id, call, err))

    def take_txn_failure(self, producer: FakeProducer, call: str) -> None:
        for i, (tid, name, err) in enumerate(self._txn_failures):
            if name == call and tid in (None, producer.transactional_id):
                del self._txn_failures[i]
                if err.fatal():
                    producer._become_fatal(err)
                elif err.txn_requires_abort():
                    producer._make_abortable(err)
                raise KafkaException(err)

    def consumer_error(self, consumer: FakeConsumer, error_code: int, *, fatal: bool = False,
                       reason: str | None = None) -> None:
        """The consumer's next poll returns an error event (e.g. a fatal one)."""
        with self.lock:
            consumer.errors.append(Message(error=fe.error(error_code, reason, fatal=fatal)))
            self.changed.notify_all()

    # -- outages -----------------------------------------------------------------------------------

    @property
    def down(self) -> bool:
        """Every broker unreachable: fetches return nothing, calls that need a broker wait
        their timeout and fail with librdkafka's errors, records wait (and time out after
        message.timeout.ms), each client's error_cb hears _TRANSPORT and _ALL_BROKERS_DOWN."""
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        with self.lock:
            if value and not self._down:
                self.outages += 1
            self._down = value
            if not value:
                for client in self.clients:
                    if isinstance(client, FakeProducer):
                        client.resend()
            self.changed.notify_all()

    def time_out_pending(self) -> None:
        """Records waiting for a broker fail now with _MSG_TIMED_OUT (no need to wait out
        message.timeout.ms)."""
        with self.lock:
            for client in self.clients:
                if isinstance(client, FakeProducer):
                    client._fail_unsent()
            self.changed.notify_all()

    def report_outage(self, client: Any) -> None:
        if not self._down or client._outage_seen == self.outages:
            return
        client._outage_seen = self.outages
        cb: Callable[[KafkaError], None] | None = client.error_cb
        if cb is not None:
            where = "fake:9092/bootstrap"
            cb(fe.error(KafkaError._TRANSPORT,
                        f"{where}: Connect to ipv4#127.0.0.1:9092 failed: Connection refused"))
            cb(fe.error(KafkaError._ALL_BROKERS_DOWN,
                        f"{self.brokers}/{self.brokers} brokers are down"))

    # -- waiting -----------------------------------------------------------------------------------

    def deadline(self, timeout: float | None) -> float | None:
        """When a call given this timeout gives up (None: never)."""
        if timeout is None or timeout < 0:
            return None if self.block_scale > 0 else time.monotonic()
        return time.monotonic() + timeout * self.block_scale

    def wait_until(self, deadline: float | None, ready: Callable[[], bool]) -> bool:
        """Wait (cluster lock held) until `ready()` or the deadline; whether it is ready. Wakes
        on every change, and every 50 ms for what time alone changes (timeouts)."""
        while not ready():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            self.changed.wait(0.05 if deadline is None else min(0.05, deadline - now))
        return True

    def expired(self, unsent: list[tuple[Any, ...]]) -> bool:
        now = time.monotonic()
        return any(item[0] <= now for item in unsent)


DEFAULT_MODULES = (
    "jobstream.consumers.runtime.loop",
    "jobstream.consumers.runtime.clients",
    "jobstream.consumers.runtime.ledger",
    "jobstream.consumers.runtime.ledger_tail",
    "jobstream.consumers.ops.topic_plan",
    "jobstream.consumers.ops.dlq",
    "jobstream.consumers.ops.replay",
    "jobstream.consumers.ops.audit",
    "jobstream.producers.publisher",
    "jobstream.producers.limits",
    "jobstream.producers.connection",
)


def patch_clients(monkeypatch: Any, cluster: FakeCluster,
                  modules: Iterable[str] = DEFAULT_MODULES) -> None:
    """Make these modules construct fake clients bound to `cluster` where they construct
    Consumer, Producer or AdminClient (for code that does not take factories yet)."""
    import importlib

    factories = {"Consumer": cluster.consumer, "Producer": cluster.producer,
                 "AdminClient": cluster.admin}
    for name in modules:
        module: ModuleType = importlib.import_module(name)
        for attr, factory in factories.items():
            if hasattr(module, attr):
                monkeypatch.setattr(module, attr, factory)
