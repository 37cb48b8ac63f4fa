"""Topic logs of the in-memory Kafka: partitions of records, transactions whose commit or
abort marker takes an offset like the real broker's control records, high watermarks and the
last stable offset (what a read_committed reader may see)."""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    KafkaError,
    Message,
    TopicPartition,
)

from jobstream.schemas.partitioner import murmur2

TP = tuple[str, int]
Headers = list[tuple[str, bytes | None]]

# Broker-side size of a batch holding one record, beyond key, value and headers (record batch
# header 61 bytes, record framing up to 21): compared with the topic's max.message.bytes.
RECORD_OVERHEAD = 82
TOPIC_DEFAULTS = {
    "cleanup.policy": "delete",
    "max.message.bytes": "1048588",
    "message.timestamp.type": "CreateTime",
    "min.insync.replicas": "1",
    "retention.bytes": "-1",
    "retention.ms": "604800000",
    "segment.bytes": "1073741824",
}


class TxnState(Enum):
    OPEN = "open"
    COMMITTED = "committed"
    ABORTED = "aborted"


@dataclass(eq=False)
class Txn:
    """One transaction of one producer epoch: the partitions added to it (each gets a marker,
    also one whose record the broker refused) and the group offsets it carries (committed
    with it, dropped with an abort)."""

    transactional_id: str
    epoch: int
    timeout_s: float = 60.0  # transaction.timeout.ms: the broker aborts it after that
    started: float = field(default_factory=time.monotonic)
    state: TxnState = TxnState.OPEN
    partitions: set[TP] = field(default_factory=set)  # added to it: each gets a marker
    first_offsets: dict[TP, int] = field(default_factory=dict)
    offsets: dict[str, dict[TP, int]] = field(default_factory=dict)  # group -> offsets

    @property
    def registered(self) -> bool:
        """Whether the coordinator has heard of it (an abort then needs the broker)."""
        return bool(self.partitions or self.offsets)


@dataclass(eq=False)
class Record:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    timestamp: tuple[int, int]
    txn: Txn | None = None
    control: bool = False  # a commit or abort marker: takes an offset, never delivered

    def visible(self, read_committed: bool) -> bool:
        if self.control:
            return False
        return not (read_committed and self.txn is not None and self.txn.state is TxnState.ABORTED)


class PartitionLog:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.low = 0  # records below were deleted (retention, delete_records)

    @property
    def high(self) -> int:
        return len(self.records)

    def lso(self) -> int:
        """Last stable offset: the first offset of a transaction still open, else the end."""
        for r in self.records[self.low :]:
            if r.txn is not None and r.txn.state is TxnState.OPEN:
                return r.offset
        return self.high

    def end(self, read_committed: bool) -> int:
        return self.lso() if read_committed else self.high

    def append(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        timestamp: tuple[int, int],
        txn: Txn | None = None,
        control: bool = False,
    ) -> Record:
        rec = Record(self.high, key, value, headers, timestamp, txn, control)
        self.records.append(rec)
        return rec


class Topic:
    def __init__(self, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
        if partitions < 1:
            raise ValueError(f"topic {name}: partitions must be at least 1, got {partitions}")
        self.name = name
        self.partitions = [PartitionLog() for _ in range(partitions)]
        self.config = {**TOPIC_DEFAULTS, **(config or {})}

    @property
    def max_message_bytes(self) -> int:
        return int(self.config["max.message.bytes"])

    def timestamp(self, create_time_ms: int | None) -> tuple[int, int]:
        now = int(time.time() * 1000)
        if self.config["message.timestamp.type"] == "LogAppendTime":
            return (TIMESTAMP_LOG_APPEND_TIME, now)
        return (TIMESTAMP_CREATE_TIME, create_time_ms or now)


def record_size(key: bytes | None, value: bytes | None, headers: Headers | None) -> int:
    size = len(key or b"") + len(value or b"")
    for k, v in headers or ():
        size += len(k.encode()) + len(v or b"")
    return size


# -- records as the client shows them ------------------------------------------------------------


def as_bytes(v: str | bytes | None) -> bytes | None:
    return v.encode() if isinstance(v, str) else v


def as_headers(headers: dict[str, Any] | list[tuple[str, Any]] | None) -> Headers | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    return [(k, as_bytes(v)) for k, v in items]


def record_message(tp: TP, rec: Record) -> Message:
    """A consumed record as confluent_kafka hands it over."""
    return message(tp[0], tp[1], rec.offset, rec.key, rec.value, rec.headers, rec.timestamp)


def message(
    topic: str,
    partition: int,
    offset: int | None,
    key: bytes | None,
    value: bytes | None,
    headers: Headers | None,
    timestamp: tuple[int, int],
    err: KafkaError | None = None,
) -> Message:
    kw: dict[str, Any] = {"topic": topic, "partition": partition, "key": key, "value": value}
    if offset is not None:
        kw["offset"] = offset
    if headers is not None:
        kw["headers"] = headers
    if err is not None:
        kw["error"] = err
    else:
        kw["timestamp"] = timestamp
    return Message(**kw)


def tp_list(tps: list[TP]) -> list[TopicPartition]:
    """Partitions as the rebalance callbacks get them (offset -1001)."""
    return [TopicPartition(t, p) for t, p in tps]


# -- partitioners (librdkafka's; murmur2 as Java's, so keys land where they do on a broker) ----


def fnv1a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def pick_partition(name: str, key: bytes | None, count: int, next_random: int) -> int:
    """The partition librdkafka's `partitioner` setting picks; `next_random` stands in for its
    random choice (the fake is deterministic: a round robin)."""
    if name.endswith("_random") and not key:
        return next_random % count
    data = key or b""
    if name.startswith("murmur2"):
        return (murmur2(data) & 0x7FFFFFFF) % count
    if name.startswith("fnv1a"):
        return fnv1a(data) % count
    if name == "random":
        return next_random % count
    return (zlib.crc32(data) & 0xFFFFFFFF) % count  # consistent, consistent_random
