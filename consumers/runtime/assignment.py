"""The partitions this worker owns, each with its state (consumers/runtime/parts.py): made when
they are assigned, renewed on a rewind, dropped when they are revoked or lost. Also the pausing
of those partitions (flow control), which only their state decides."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from jobstream.config.durations import now_ms
from jobstream.config.settings import WorkerSettings
from jobstream.config.topics import base_of, ledger_topic, tier_delay
from jobstream.consumers.metrics import Metrics
from jobstream.consumers.runtime.fetch_wake import FetchWaker
from jobstream.consumers.runtime.ledger import Ledger
from jobstream.consumers.runtime.parts import PartitionState
from jobstream.consumers.runtime.types import TP


class Assignment:
    def __init__(
        self, consumer: Consumer, ledger: Ledger, metrics: Metrics, job_of_topic: dict[str, str]
    ) -> None:
        self.consumer = consumer
        self.ledger = ledger
        self.metrics = metrics
        self.job_of_topic = job_of_topic
        # The dict itself is shared with the crash watch: it asks which states are current.
        self.parts: dict[TP, PartitionState] = {}
        self._gen = 0
        self.full = False  # fetched-and-unfinished jobs reached the buffer limit

    @property
    def generation(self) -> int:
        """Moves with every partition added or renewed."""
        return self._gen

    def get(self, tp: TP) -> PartitionState | None:
        return self.parts.get(tp)

    def current(self, tp: TP, gen: int) -> PartitionState | None:
        """The partition's state if it is still the generation `gen` (not revoked, not rewound)."""
        ps = self.parts.get(tp)
        return ps if ps is not None and ps.gen == gen else None

    def __iter__(self) -> Iterator[PartitionState]:
        return iter(self.parts.values())

    def __contains__(self, tp: object) -> bool:
        return tp in self.parts

    def __len__(self) -> int:
        return len(self.parts)

    def add(self, partitions: Iterable[TopicPartition]) -> list[TP]:
        """New states for newly assigned partitions; returns their ledger partitions."""
        ledger_tps = []
        for p in partitions:
            tp = (p.topic, p.partition)
            self._gen += 1
            ltp = (ledger_topic(base_of(p.topic)), p.partition)
            self.parts[tp] = PartitionState(
                tp, self.job_of_topic[p.topic], ltp, tier_delay(p.topic) is not None, self._gen
            )
            ledger_tps.append(ltp)
        return ledger_tps

    def renew(self, tp: TP) -> None:
        """A fresh state (a new generation) for a partition going back to its last commit."""
        old = self.parts[tp]
        self._gen += 1
        self.parts[tp] = PartitionState(
            tp, old.job_type, old.ledger_tp, old.is_tier, self._gen, paused=old.paused
        )

    def drop(self, tp: TP) -> None:
        ps = self.parts.pop(tp, None)
        if ps is not None:
            self._gen += 1
            self.ledger.release(ps.ledger_tp)
            self.metrics.drop_lag(*tp)

    def commit_offsets(self) -> dict[TP, int]:
        """Per partition, the offset below which every record finished (where it has one)."""
        offsets = {}
        for tp, ps in self.parts.items():
            off = ps.offsets.commit_offset()
            if off is not None:
                offsets[tp] = off
        return offsets

    def mark_committed(self, offsets: dict[TP, int]) -> None:
        for tp, off in offsets.items():
            self.parts[tp].offsets.mark_committed(off)

    def commit_failed(
        self, err: KafkaError | None, partitions: list[TopicPartition], log: Any
    ) -> None:
        """Results of asynchronous offset commits (at least once): offer a failed one again."""
        failed = [p for p in partitions if _commit_error(p.error or err)]
        for p in failed:
            ps = self.parts.get((p.topic, p.partition))
            if ps is not None:
                ps.offsets.commit_failed(p.offset)
        if failed:
            log.warning(
                "commit_failed",
                error=str(err or failed[0].error),
                partitions=[f"{p.topic}[{p.partition}]" for p in failed],
            )

    def busy(self) -> bool:
        return any(ps.running or ps.queues.queued for ps in self.parts.values())

    def running(self, tps: Iterable[TP] | None = None) -> bool:
        if tps is None:
            return any(ps.running for ps in self.parts.values())
        return any(self.parts[tp].running for tp in tps if tp in self.parts)

    def in_flight(self) -> int:
        return sum(ps.in_flight for ps in self.parts.values())

    def restoring(self) -> bool:
        return not all(self.ledger.ready(ps.ledger_tp) for ps in self.parts.values())

    def pause_all(self) -> None:
        for ps in self.parts.values():
            self.set_paused(ps, True)

    def set_paused(self, ps: PartitionState, paused: bool) -> None:
        tp = [TopicPartition(*ps.tp)]
        if paused:
            self.consumer.pause(tp)
        else:
            self.consumer.resume(tp)
        ps.paused = paused

    def reconcile_pauses(
        self,
        ws: WorkerSettings,
        held_types: set[str],
        stopping: bool,
        fetch_wake: FetchWaker | None,
        lane_pause: Callable[[PartitionState], bool | None] | None = None,
    ) -> None:
        """lane_pause: a priority lane's own pause decision (lane_gate.py), which replaces the
        whole-buffer rule for its partitions; None for other partitions."""
        # Pausing makes librdkafka drop what it prefetched, and the refetch after resuming takes
        # up to a second: pause only once a buffer of fetched jobs waits behind the running ones,
        # and resume while half of it is left, so the refetch lands before the pool runs dry.
        in_flight = self.in_flight()
        if in_flight >= ws.max_in_flight + ws.max_buffered:
            self.full = True
        elif in_flight <= ws.max_in_flight + ws.max_buffered // 2:
            self.full = False
        wall = now_ms()
        resumed: list[TP] = []
        for ps in self.parts.values():
            if ps.gated_until_ms and ps.gated_until_ms <= wall:
                ps.gated_until_ms = 0
            lane = lane_pause(ps) if lane_pause is not None else None
            want = (
                stopping
                or (self.full if lane is None else lane)
                or bool(ps.gated_until_ms)
                or ps.held > 0
                or not self.ledger.ready(ps.ledger_tp)
                or ps.job_type in held_types
            )
            if want != ps.paused:
                self.set_paused(ps, want)
                if not want:
                    resumed.append(ps.tp)
        if resumed and fetch_wake is not None:
            fetch_wake.wake(resumed)


def _commit_error(err: KafkaError | None) -> bool:
    return err is not None and err.code() != KafkaError._NO_OFFSET
