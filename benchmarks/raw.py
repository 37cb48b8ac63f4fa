"""Baselines written with confluent-kafka directly: the same Kafka I/O as the worker or the
publisher, without jobstream in between."""

from __future__ import annotations

import contextlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from hashlib import blake2b
from struct import Struct
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from jobstream.config.kafka import client_config
from jobstream.config.settings import Mode, Settings
from jobstream.schemas.ledger_entry import SUCCEEDED, encode_entry

# The worker's producer settings (Publisher defaults + the worker's overrides).
WORKER_PRODUCER = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 2,
    "partitioner": "murmur2_random",
    "message.max.bytes": 1_048_588,
}
PUBLISHER_PRODUCER = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "partitioner": "murmur2_random",
}


def consume_loop(
    settings: Settings,
    topic: str,
    n: int,
    mode: Mode | None,
    ledger_topic: str | None,
    commit_interval_s: float = 0.5,
    handoff_threads: int = 0,
) -> tuple[float, float]:
    """A hand-written worker loop over `topic` in a fresh group: per record, produce one
    ledger-sized record (key = record key) to `ledger_topic` on the same partition; every
    `commit_interval_s` commit like the worker does in `mode` (at-least-once: flush, then a
    synchronous offset commit; transactional: offsets sent into the transaction, commit).
    mode None: consume only, one synchronous commit at the end.
    handoff_threads > 0: also run a no-op for each record on a thread pool of that size and
    wait for it before the record's produce: the least a worker whose handlers run on threads
    adds to the loop.

    Returns (first record received, all offsets committed) as wall times."""
    group = f"raw-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        client_config(
            settings.kafka,
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "cooperative-sticky",
            },
        )
    )
    producer: Producer | None = None
    if mode is not None:
        conf: dict[str, Any] = dict(WORKER_PRODUCER)
        if mode is Mode.TRANSACTIONAL:
            conf["transactional.id"] = f"raw-{group}"
            conf["transaction.timeout.ms"] = 10_000
        producer = Producer(client_config(settings.kafka, **conf))
        if mode is Mode.TRANSACTIONAL:
            producer.init_transactions(30)
    value = encode_entry(SUCCEEDED, int(time.time() * 1000), 1, "raw-baseline")
    consumer.subscribe([topic])
    seen = 0
    first = 0.0
    next_offsets: dict[int, int] = {}
    in_txn = False
    last_commit = time.monotonic()

    def commit() -> None:
        nonlocal in_txn
        tps = [TopicPartition(topic, p, o) for p, o in next_offsets.items()]
        if producer is None or mode is Mode.AT_LEAST_ONCE:
            if producer is not None:
                producer.flush(30)
            if tps:
                consumer.commit(offsets=tps, asynchronous=False)
        elif in_txn:
            producer.send_offsets_to_transaction(tps, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            in_txn = False

    pool = ThreadPoolExecutor(handoff_threads) if handoff_threads else None
    try:
        while seen < n:
            msgs = consumer.consume(500, timeout=0.1)
            if pool is not None:
                for done in [pool.submit(_noop) for _ in msgs]:
                    done.result()
            for m in msgs:
                if m.error() is not None:
                    continue
                if not first:
                    first = time.time()
                partition = m.partition() or 0
                if producer is not None:
                    if mode is Mode.TRANSACTIONAL and not in_txn:
                        producer.begin_transaction()
                        in_txn = True
                    producer.produce(ledger_topic or "", value, m.key(), partition=partition)
                next_offsets[partition] = (m.offset() or 0) + 1
                seen += 1
            if producer is not None:
                producer.poll(0)
                if time.monotonic() - last_commit >= commit_interval_s:
                    commit()
                    last_commit = time.monotonic()
        commit()
        return first, time.time()
    finally:
        if pool is not None:
            pool.shutdown()
        consumer.close()


def _noop() -> None:
    pass


def relay_loop(
    settings: Settings, topic: str, ledger_topic: str, stop: Any, mode: Mode = Mode.AT_LEAST_ONCE
) -> None:
    """The latency baseline: consume `topic` (fresh group, the worker's fetch settings) and
    produce one ledger-sized record per job, keyed by its js-job-id, to `ledger_topic` on the
    same partition as soon as it arrives. Every 0.5 s commit like the worker in `mode`
    (at-least-once: flush + a synchronous offset commit; transactional: the offsets sent into
    the transaction, then commit_transaction). Runs until `stop` is set."""
    group = f"raw-relay-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        client_config(
            settings.kafka,
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 25,
            },
        )
    )
    txn = mode is Mode.TRANSACTIONAL
    conf: dict[str, Any] = dict(WORKER_PRODUCER)
    if txn:
        conf["transactional.id"] = f"raw-{group}"
        conf["transaction.timeout.ms"] = 10_000
    producer = Producer(client_config(settings.kafka, **conf))
    if txn:
        producer.init_transactions(30)
    value = encode_entry(SUCCEEDED, int(time.time() * 1000), 1, "raw-relay")
    consumer.subscribe([topic])
    last_commit = time.monotonic()
    next_offsets: dict[int, int] = {}
    in_txn = False

    def commit() -> None:
        nonlocal in_txn
        if not txn:
            producer.flush(30)
            with contextlib.suppress(KafkaException):  # nothing consumed yet
                consumer.commit(asynchronous=False)
        elif in_txn:
            tps = [TopicPartition(topic, p, o) for p, o in next_offsets.items()]
            producer.send_offsets_to_transaction(tps, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            in_txn = False

    try:
        while not stop.is_set():
            msg = consumer.poll(0.005)
            if msg is not None and msg.error() is None:
                if txn and not in_txn:
                    producer.begin_transaction()
                    in_txn = True
                job_id = dict(msg.headers() or []).get("js-job-id")
                partition = msg.partition() or 0
                producer.produce(ledger_topic, value, job_id, partition=partition)
                next_offsets[partition] = (msg.offset() or 0) + 1
            producer.poll(0)
            if time.monotonic() - last_commit >= 0.5:
                commit()
                last_commit = time.monotonic()
        commit()
    finally:
        producer.flush(30)
        consumer.close()


unpack = Struct("<QQ").unpack


def read_to_end(settings: Settings, topic: str, partitions: int, digest: bool = False) -> int:
    """Read every partition of `topic` from its low to its high watermark (assign, no group,
    read_committed), touching key and value: the loop of the ledger restore without decoding
    or storing. digest: also take each key's 16-byte blake2b digest, as a LedgerView must.
    Returns the records read."""
    consumer = Consumer(
        client_config(
            settings.kafka,
            **{
                "group.id": "bench-raw-reader",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.max.bytes": 16 * 1024 * 1024,
                "fetch.queue.backoff.ms": 20,  # as the restore: no idle second
            },
        )
    )
    try:
        ends = {}
        assign = []
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if high > low:
                ends[p] = high
                assign.append(TopicPartition(topic, p, low))
        consumer.assign(assign)
        count = 0
        while ends:
            for msg in consumer.consume(1000, timeout=0.05):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(err.str())
                    continue
                key, value = msg.key(), msg.value()
                if key is not None and value is not None:
                    if digest:
                        unpack(blake2b(key, digest_size=16).digest())
                    count += 1
            for tpo in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tpo.offset >= ends[tpo.partition]:
                    del ends[tpo.partition]
        return count
    finally:
        consumer.close()
