"""Which offset is safe to commit while records of a partition finish out of order.

Kafka convention: the committed offset is the next offset to read, so it is
"highest finished offset + 1" such that every tracked record below it is finished.
A record is finished when it succeeded, was routed to a retry tier or the DLQ, or
was skipped as a duplicate. We never commit past an unfinished record.

With nothing in flight the commit point moves on to the consumer's position instead: what
lies between the last record handed over and that position is transaction markers and
aborted records, and a commit that stopped below them left a lag of 1 or more for ever
(KAFKA-6607; librdkafka #2539).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping

TopicPartition = tuple[str, int]


class PartitionOffsets:
    """Records of one partition in flight; O(1) amortized per record."""

    def __init__(self) -> None:
        self._tracked: deque[int] = deque()  # tracked offsets not yet below the commit point
        self._unfinished: set[int] = set()
        self._last_tracked: int | None = None
        self._safe: int | None = None  # offset safe to commit, None until a record finishes
        self._committed: int | None = None

    def seen(self, offset: int) -> bool:
        """Whether this offset is at or below one already tracked (a redelivery)."""
        return self._last_tracked is not None and offset <= self._last_tracked

    def track(self, offset: int) -> None:
        """Register a record handed to the worker. Offsets must increase; gaps are fine
        (compaction, transaction markers)."""
        if self._last_tracked is not None and offset <= self._last_tracked:
            raise ValueError(
                f"offset {offset} tracked out of order: last tracked is {self._last_tracked}"
            )
        self._last_tracked = offset
        self._tracked.append(offset)
        self._unfinished.add(offset)

    def finish(self, offset: int) -> None:
        """Mark a tracked record finished, in any order."""
        try:
            self._unfinished.remove(offset)
        except KeyError:
            raise ValueError(f"offset {offset} is not in flight (untracked or finished)") from None
        # Each offset is popped once overall, so this loop is O(1) amortized.
        tracked, unfinished = self._tracked, self._unfinished
        while tracked and tracked[0] not in unfinished:
            self._safe = tracked.popleft() + 1

    def advance_to(self, position: int) -> None:
        """The consumer's position: everything below it was handed over. With every tracked
        record finished and below the commit point, the rest below it is transaction markers
        and aborted records, so the commit point moves there. The caller must have received
        every record handed over (not from inside a rebalance callback, while a batch waits)."""
        if self._tracked or position < 0:  # in flight, or no position (just assigned, seeked)
            return
        if self._last_tracked is not None and position <= self._last_tracked:
            return
        if self._safe is None or position > self._safe:
            self._safe = position

    def commit_offset(self) -> int | None:
        """Offset to commit now, or None when nothing new since mark_committed."""
        if self._safe is None or self._safe == self._committed:
            return None
        return self._safe

    def mark_committed(self, offset: int) -> None:
        """Record that `offset` was committed (it may be older than commit_offset())."""
        if self._safe is None or offset > self._safe:
            raise ValueError(f"offset {offset} was never safe to commit (safe: {self._safe})")
        self._committed = offset

    def commit_failed(self, offset: int) -> None:
        """An asynchronous commit of `offset` failed: offer it again unless a later one was
        marked meanwhile."""
        if self._committed == offset:
            self._committed = None

    @property
    def floor(self) -> int | None:
        """Every tracked record below this offset is finished (None before the first)."""
        return self._safe

    @property
    def in_flight(self) -> int:
        """Tracked records not finished yet."""
        return len(self._unfinished)

    @property
    def pending(self) -> int:
        """Tracked records not yet below the commit point: in flight, or finished but
        held back by an earlier unfinished record. Bounds head-of-line blocking memory."""
        return len(self._tracked)


class OffsetBook(Mapping[TopicPartition, PartitionOffsets]):
    """PartitionOffsets per (topic, partition) of the assigned partitions."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, PartitionOffsets] = {}

    def __getitem__(self, tp: TopicPartition) -> PartitionOffsets:
        return self._parts[tp]

    def __iter__(self) -> Iterator[TopicPartition]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    def partition(self, tp: TopicPartition) -> PartitionOffsets:
        """The tracker for tp, created on first use."""
        parts = self._parts.get(tp)
        if parts is None:
            parts = self._parts[tp] = PartitionOffsets()
        return parts

    def track(self, tp: TopicPartition, offset: int) -> None:
        self.partition(tp).track(offset)

    def finish(self, tp: TopicPartition, offset: int) -> None:
        try:
            parts = self._parts[tp]
        except KeyError:
            raise ValueError(f"partition {tp} is not tracked") from None
        parts.finish(offset)

    def commit_offsets(self) -> dict[TopicPartition, int]:
        """Offsets to commit, only for partitions that moved since mark_committed."""
        offsets: dict[TopicPartition, int] = {}
        for tp, parts in self._parts.items():
            offset = parts.commit_offset()
            if offset is not None:
                offsets[tp] = offset
        return offsets

    def mark_committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record a successful commit; partitions dropped meanwhile are ignored."""
        for tp, offset in offsets.items():
            parts = self._parts.get(tp)
            if parts is not None:
                parts.mark_committed(offset)

    def drop(self, tp: TopicPartition) -> PartitionOffsets | None:
        """Forget a revoked partition; returns its tracker (None if unknown)."""
        return self._parts.pop(tp, None)

    @property
    def in_flight_total(self) -> int:
        return sum(parts.in_flight for parts in self._parts.values())
