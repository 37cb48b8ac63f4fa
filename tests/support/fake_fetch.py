"""What a FakeConsumer fetches: its assigned partitions, where each fetch starts, what is
paused, and the application's positions, as librdkafka keeps them: -1001 until a record was
consumed (also right after a seek), then past the last record consumed or skipped (aborted
records and transaction markers). Every method expects the cluster lock held."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    OFFSET_STORED,
    KafkaError,
    Message,
    TopicPartition,
)

from tests.support import fake_errors as fe
from tests.support.fake_log import record_message

if TYPE_CHECKING:
    from tests.support.fake_kafka import FakeCluster
    from tests.support.fake_log import TP

_EARLIEST = ("earliest", "smallest", "beginning")


@dataclass
class Fetch:
    """One assigned partition: where the next fetch starts (None: to be resolved from
    `requested`, a logical or explicit offset) and the application's position."""

    requested: int
    next: int | None = None
    position: int = OFFSET_INVALID
    paused: bool = False
    eof_at: int = -1
    cached: tuple[int, int] = (OFFSET_INVALID, OFFSET_INVALID)


class Fetcher:
    def __init__(self, cluster: FakeCluster, conf: dict[str, Any]) -> None:
        self.cluster = cluster
        self.group_id = str(conf["group.id"])
        self.read_committed = conf.get("isolation.level", "read_committed") == "read_committed"
        self.reset = str(conf.get("auto.offset.reset", "latest"))
        self.eof = bool(conf.get("enable.partition.eof", False))
        self.fetches: dict[TP, Fetch] = {}
        self._rotate = 0

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.fetches = {(p.topic, p.partition): Fetch(p.offset) for p in partitions}

    def add(self, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            if (p.topic, p.partition) in self.fetches:
                fe.fail(
                    KafkaError._INVALID_ARG,
                    f"{p.topic} [{p.partition}] is already part of the current assignment",
                )
        for p in partitions:
            self.fetches[(p.topic, p.partition)] = Fetch(p.offset)

    def remove(self, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            if (p.topic, p.partition) not in self.fetches:
                fe.fail(
                    KafkaError._INVALID_ARG,
                    f"{p.topic} [{p.partition}] is not part of the current assignment",
                )
        for p in partitions:
            del self.fetches[(p.topic, p.partition)]

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p, OFFSET_STORED) for t, p in sorted(self.fetches)]

    def set_paused(self, partitions: list[TopicPartition], paused: bool) -> None:
        for p in partitions:  # not assigned: ignored, as librdkafka does
            f = self.fetches.get((p.topic, p.partition))
            if f is not None:
                f.paused = paused

    def seek(self, partition: TopicPartition) -> None:
        f = self.fetches.get((partition.topic, partition.partition))
        if f is None:
            fe.fail(
                KafkaError._UNKNOWN_PARTITION,
                f"Failed to seek to offset {partition.offset}: Local: Unknown partition",
            )
        f.requested, f.next, f.position, f.eof_at = partition.offset, None, OFFSET_INVALID, -1

    def positions(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        out = []
        for p in partitions:
            f = self.fetches.get((p.topic, p.partition))
            out.append(TopicPartition(p.topic, p.partition, f.position if f else OFFSET_INVALID))
        return out

    def current(self) -> list[TopicPartition]:
        """Every assigned partition with its position (what commit() with no offsets commits)."""
        return [TopicPartition(t, p, f.position) for (t, p), f in sorted(self.fetches.items())]

    def cached(self, tp: TP) -> tuple[int, int]:
        """Watermarks from the last fetch (a read_committed one reports the stable offset)."""
        f = self.fetches.get(tp)
        return f.cached if f is not None else (OFFSET_INVALID, OFFSET_INVALID)

    def ready(self) -> bool:
        """Whether a fetch would return something now."""
        c = self.cluster
        for tp, f in self.fetches.items():
            log = c.log(tp)
            if f.paused or log is None:
                continue
            start = f.next if f.next is not None else self._resolve(tp, f)
            if start is None:
                continue
            if start < log.end(self.read_committed) or (self.eof and f.eof_at != start):
                return True
        return False

    def take(self, n: int) -> list[Message]:
        """Up to n messages: whole runs per partition, the partitions in turn."""
        c = self.cluster
        out: list[Message] = []
        tps = sorted(self.fetches)
        self._rotate += 1
        for i in range(len(tps)):
            if len(out) >= n:
                break
            tp = tps[(i + self._rotate) % len(tps)]
            f = self.fetches[tp]
            log = c.log(tp)
            if f.paused or log is None:
                continue
            if f.next is None:
                f.next = self._resolve(tp, f)
                if f.next is None:
                    continue  # its committed offset is not stable yet
            end = log.end(self.read_committed)
            f.cached = (log.low, end)
            if f.next < log.low:
                f.next = self._reset(tp)
            while f.next < end and len(out) < n:
                rec = log.records[f.next]
                f.next += 1
                f.position = f.next
                if rec.visible(self.read_committed):
                    out.append(record_message(tp, rec))
            if self.eof and f.next >= end and f.eof_at != f.next and len(out) < n:
                f.eof_at = f.next
                err = fe.error(KafkaError._PARTITION_EOF)
                out.append(Message(topic=tp[0], partition=tp[1], offset=f.next, error=err))
        return out

    def _resolve(self, tp: TP, f: Fetch) -> int | None:
        """Where a fetch starts: the requested offset, else the group's committed offset
        (not while a transaction holds it, for read_committed), else auto.offset.reset."""
        c = self.cluster
        log = c.log(tp)
        assert log is not None
        req = f.requested
        if req == OFFSET_BEGINNING:
            return log.low
        if req == OFFSET_END:
            return log.end(self.read_committed)
        if req >= 0:
            return req if log.low <= req <= log.high else self._reset(tp)
        group = c.group(self.group_id)
        if self.read_committed and tp in group.pending:
            return None
        committed = group.committed.get(tp)
        return committed if committed is not None else self._reset(tp)

    def _reset(self, tp: TP) -> int:
        log = self.cluster.log(tp)
        assert log is not None
        return log.low if self.reset in _EARLIEST else log.end(self.read_committed)
