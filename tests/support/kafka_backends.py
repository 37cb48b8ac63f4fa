"""The two backends of the fake Kafka's contract test (tests/integration/
test_fake_kafka_contract.py): the real broker and the in-memory one, behind one small
interface, plus the helpers its scenarios observe with (errors and waits made comparable)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.fake_kafka import FakeCluster

DEADLINE_S = 30.0  # for anything a scenario waits for; reaching it is an observation


class Backend:
    """Clients and topics under logical names (the observations never hold the real ones)."""

    name = ""
    pace = 1.0  # how long "nothing happened for a while" lasts, relative to a real broker

    def __init__(self, unique: str) -> None:
        self.unique = unique

    def real_name(self, logical: str) -> str:
        return f"contract.{self.unique}.{logical}"

    def create(self, logical: str, partitions: int, config: dict[str, str] | None = None) -> str:
        raise NotImplementedError

    def consumer(self, **conf: Any) -> Any:
        raise NotImplementedError

    def producer(self, **conf: Any) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


class RealBackend(Backend):
    name = "real"

    def __init__(self, bootstrap: str, unique: str) -> None:
        super().__init__(unique)
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.created: list[str] = []

    def create(self, logical: str, partitions: int, config: dict[str, str] | None = None) -> str:
        name = self.real_name(logical)
        fut = self.admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])
        fut[name].result(30)
        self.created.append(name)
        # Usable once every partition has a leader that answers a watermark query.
        c = self.consumer(**{"group.id": "contract-probe"})
        try:
            for p in range(partitions):
                wait_for(partial(_answers, c, name, p), "a leader for the new topic")
        finally:
            c.close()
        return name

    def consumer(self, **conf: Any) -> Consumer:
        return Consumer({"bootstrap.servers": self.bootstrap, **conf})

    def producer(self, **conf: Any) -> Producer:
        return Producer({"bootstrap.servers": self.bootstrap, **conf})

    def close(self) -> None:
        if self.created:
            for fut in self.admin.delete_topics(self.created, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result(30)


class FakeBackend(Backend):
    name = "fake"
    pace = 0.1

    def __init__(self, unique: str) -> None:
        super().__init__(unique)
        # Waits are real but short: a scenario's idle polls cost a tenth of the real ones.
        self.cluster = FakeCluster(block_scale=0.1)

    def create(self, logical: str, partitions: int, config: dict[str, str] | None = None) -> str:
        name = self.real_name(logical)
        self.cluster.create_topic(name, partitions, config)
        return name

    def consumer(self, **conf: Any) -> Any:
        return self.cluster.consumer(conf)

    def producer(self, **conf: Any) -> Any:
        return self.cluster.producer(conf)


def _answers(c: Any, topic: str, p: int) -> bool:
    try:
        c.get_watermark_offsets(TopicPartition(topic, p), timeout=2)
        return True
    except KafkaException:
        return False


def wait_for(pred: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    end = time.monotonic() + deadline_s
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def err(e: KafkaError | None) -> dict[str, Any] | None:
    """What code may rely on of an error: its code and flags (texts name brokers and ids)."""
    if e is None:
        return None
    return {
        "code": e.name(),
        "fatal": e.fatal(),
        "retriable": e.retriable(),
        "txn_requires_abort": e.txn_requires_abort(),
    }


def raised(fn: Callable[[], Any]) -> Any:
    """'ok' or the KafkaException's error. The binding raises a fatal error that meets a
    pending callback as a SystemError caused by it (commit.py's kafka_exception): the cause
    counts, as it does for the worker."""
    try:
        fn()
        return "ok"
    except SystemError as e:
        cause = e.__cause__
        if isinstance(cause, KafkaException):
            return err(cause.args[0])
        raise
    except KafkaException as e:
        return err(e.args[0])


def offsets(tps: list[TopicPartition]) -> list[tuple[int, int]]:
    return sorted((tp.partition, tp.offset) for tp in tps)


def read_to_end(c: Any, topic: str, ends: dict[int, int]) -> list[tuple[int, int, Any]]:
    """Poll until every partition's position reaches its end offset: (partition, offset,
    value) of each record, in order per partition."""
    got: list[tuple[int, int, Any]] = []
    deadline = time.monotonic() + DEADLINE_S
    pending = {p for p, end in ends.items() if end > 0}
    while pending:
        if time.monotonic() > deadline:
            got.append((-1, -1, "timed out"))
            break
        for m in c.consume(100, timeout=0.2):
            if m.error() is None:
                got.append((m.partition(), m.offset(), m.value()))
        for tpo in c.position([TopicPartition(topic, p) for p in pending]):
            if tpo.offset >= ends[tpo.partition]:
                pending.discard(tpo.partition)
    return sorted(got)


def settled_watermarks(rc: Any, ru: Any, topic: str, p: int) -> dict[str, tuple[int, int]]:
    """(low, high) as a read_committed and a read_uncommitted consumer see them, once no
    transaction is open: a broker writes the markers just after commit_transaction returns,
    so the last stable offset may trail for a moment."""
    tp = TopicPartition(topic, p)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        got = {
            "read_committed": rc.get_watermark_offsets(tp, timeout=10),
            "read_uncommitted": ru.get_watermark_offsets(tp, timeout=10),
        }
        if got["read_committed"] == got["read_uncommitted"] or time.monotonic() > deadline:
            return got
        time.sleep(0.05)
