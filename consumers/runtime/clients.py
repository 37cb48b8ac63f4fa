"""The worker's Kafka clients: their configuration, and the factories that build them. The
Worker takes the factories, so tests hand it the in-memory Kafka's (tests/support/)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from jobstream.config.kafka import client_config, group_config
from jobstream.config.settings import Mode, Settings

MakeConsumer = Callable[[dict[str, Any]], Consumer]
OWNER_TXN_TIMEOUT_MS = 10_000

MakeProducer = Callable[[dict[str, Any]], Producer]

IDLE_SERVE_S = 0.005  # a producer with nothing to serve is still polled this often


class Reports:
    """A producer's poll(0) once per loop pass, skipped while it has nothing to serve: its
    len() (librdkafka's outq_len) counts the records in flight and the delivery reports and
    callbacks waiting for a poll. The skipped call released and took back the GIL, two of the
    four client calls of each pass of a worker at a steady, moderate rate. Polled every
    IDLE_SERVE_S all the same."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0.0

    def serve(self, producer: Any) -> int:
        if not len(producer):
            now = time.monotonic()
            if now - self._last < IDLE_SERVE_S:
                return 0
            self._last = now
        return int(producer.poll(0))


def consumer_config(
    settings: Settings, group: str, error_cb: Callable[..., None], on_commit: Callable[..., None]
) -> dict[str, Any]:
    ws = settings.worker
    return client_config(
        settings.kafka,
        **{
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            **group_config(ws),
            "max.poll.interval.ms": ws.max_poll_interval_ms,
            "enable.partition.eof": False,
            # A resumed partition's first fetch waits this long (see fetch_wake.py).
            "fetch.wait.max.ms": ws.fetch_wait_max_ms,
            "error_cb": error_cb,
            "on_commit": on_commit,
        },
    )


def owner_consumer_config(settings: Settings, group: str, fetch_wait_ms: int,
                          **extra: Any) -> dict[str, Any]:
    """The consumer of a worker's owner thread (scheduler, recurring schedules, batches): a
    group of its own, each partition read from its start to the end seen at assignment (EOF
    events say when), read_committed, its offsets committed in the owner's transactions."""
    ws = settings.worker
    return client_config(settings.kafka, **{
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "session.timeout.ms": ws.session_timeout_ms,
        "heartbeat.interval.ms": max(100, ws.session_timeout_ms // 5),
        "fetch.wait.max.ms": fetch_wait_ms,
        **extra,
    })


class LogEnds:
    """Partitions' true ends (low and high watermarks), asked of a read_uncommitted client.

    A read_committed consumer's get_watermark_offsets returns the last stable offset as the
    high mark (librdkafka honours isolation.level in ListOffsets): it stops before the records
    of a transaction still open, and of one whose commit returned but whose markers are not
    written yet. An owner that restored "up to the end" by that mark took the previous
    owner's last dispatch for undone. Reading with read_committed until the end-of-partition
    event reaches the true high mark waits for every such transaction to end instead."""

    def __init__(self, settings: Settings, group: str) -> None:
        self._consumer = Consumer(client_config(settings.kafka, **{
            "group.id": group,  # assign only: never joins it or commits
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
        }))

    def of(self, topic: str, partition: int, timeout_s: float = 30.0) -> tuple[int, int]:
        """(low, high) of the partition, retried while its leader is not known yet (a topic
        just created)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=5, cached=False)
                return int(low), int(high)
            except:  # noqa: E722 - seen raised as a bare KafkaError, which is no Exception
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def close(self) -> None:
        self._consumer.close()


def owner_producer_config(settings: Settings, txn_id: str, **extra: Any) -> dict[str, Any]:
    """The transactional producer of a worker's owner thread (scheduler, recurring schedules,
    batches): a short transaction timeout, so a killed owner's open transaction is aborted
    soon and the next owner's read_committed restore is not held up for long."""
    return client_config(settings.kafka, **{
        "transactional.id": txn_id,
        "transaction.timeout.ms": OWNER_TXN_TIMEOUT_MS,
        "linger.ms": 2,
        **extra,
    })


def producer_config(
    settings: Settings, group: str, worker_id: str, error_cb: Callable[..., None]
) -> dict[str, Any]:
    """What the worker's publisher adds to the publisher's own producer config."""
    # message.max.bytes: up to the broker's default topic limit, so a record that came in
    # near the limit can still be dead-lettered with its (trimmed) failure headers.
    conf: dict[str, Any] = {
        "linger.ms": 2,
        "message.max.bytes": 1_048_588,
        # The producer's view of the brokers counts for readiness too: a consumer-protocol
        # consumer may not report all brokers down within a short outage.
        "error_cb": error_cb,
    }
    if settings.worker.mode is Mode.TRANSACTIONAL:
        conf["transactional.id"] = f"jobstream-{group}-{worker_id}"
        conf["transaction.timeout.ms"] = 10_000
    return conf


def make_consumer(conf: dict[str, Any]) -> Consumer:
    return Consumer(conf)


def make_producer(conf: dict[str, Any]) -> Producer:
    return Producer(conf)
