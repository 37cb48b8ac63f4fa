"""Partitions coming and going, and intervals given up: joining the group, the worker's
rebalance callbacks, aborting an interval and rewinding to the last commit, and renewing a
producer whose transaction the broker timed out. Part of Worker (consumers/worker.py)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from jobstream.config.settings import Assignment, Mode, Settings, WorkerSettings
from jobstream.config.topics import JobTopics, base_of, ledger_topic, tier_delay
from jobstream.consumers.commit import Committer, ProducerFenced
from jobstream.consumers.decode import Job
from jobstream.consumers.errors import AssignmentMismatch, WorkerError, WorkerFenced
from jobstream.consumers.freeze import FreezeWatch
from jobstream.consumers.health import Health
from jobstream.consumers.history_writer import HistoryWriter
from jobstream.consumers.ledger import Ledger
from jobstream.consumers.metrics import Metrics
from jobstream.consumers.offsets import PartitionOffsets
from jobstream.consumers.ops.topic_plan import group_assignor, group_session_ms
from jobstream.consumers.ordering import KeyQueues
from jobstream.producers.publisher import Publisher
from jobstream.schemas.registry import SchemaRegistry

TP = tuple[str, int]
RENEW_LIMIT_S = 300.0


@dataclass
class PartitionState:
    tp: TP
    job_type: str
    ledger_tp: TP
    is_tier: bool
    gen: int
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    queues: KeyQueues[Job] = field(default_factory=KeyQueues)
    running: int = 0
    gated_until_ms: int = 0  # tier head not due before this
    held: int = 0  # strict-ordering jobs waiting for an in-place retry
    paused: bool = True  # as last told to the consumer

    @property
    def in_flight(self) -> int:
        return self.offsets.in_flight


class Rebalancing:
    # provided by Worker
    settings: Settings
    ws: WorkerSettings
    registry: SchemaRegistry
    consumer: Consumer
    producer: Producer
    publisher: Publisher
    committer: Committer
    ledger: Ledger
    history: HistoryWriter
    metrics: Metrics
    health: Health
    freeze: FreezeWatch
    log: Any
    parts: dict[TP, PartitionState]
    job_of_topic: dict[str, str]
    topics: dict[str, JobTopics]
    group: str
    _producer_conf: dict[str, Any]
    _broken: str | None
    _gen: int
    _joined: bool
    _waiting: list[tuple[float, int, Job]]
    _deferred: list[tuple[PartitionState, Job]]
    _finished_since_commit: int
    _last_commit: float
    _in_rebalance = False  # inside _on_revoke (its commit must not move to positions)

    if TYPE_CHECKING:
        from jobstream.consumers.crashes import CrashWatch

        crash_watch: CrashWatch

        def _commit(self) -> None: ...

        def _serve_producer(self, flush_s: float | None = None) -> None: ...

        def _drain_results(self, block_s: float = 0.0, discard: bool = False) -> None: ...

        def _withdraw(self, tps: set[TP] | None = None) -> None: ...

    def subscribe(self) -> None:
        topics = sorted(self.job_of_topic)
        try:
            live = self.consumer.list_topics(timeout=15).topics
        except Exception as e:
            raise WorkerError(
                f"broker unreachable at {self.settings.kafka.bootstrap_servers}: {e}"
            ) from None
        missing = [t for t in topics if t not in live]
        missing += [ltp for ltp in {t.ledger for t in self.topics.values()} if ltp not in live]
        if missing:
            raise WorkerError(
                f"topics missing: {sorted(missing)}; create them with `jobstream topics apply`"
            )
        if self.ws.assignment is Assignment.CONSUMER_PROTOCOL:
            # The broker owns the session here; the freeze watch must use the same limit.
            session_ms = group_session_ms(self.settings, self.group)
            if session_ms is None:
                self.log.warning(
                    "group_session_unknown",
                    detail="could not read the group's consumer.session.timeout.ms; "
                    f"assuming worker.session_timeout_ms ({self.ws.session_timeout_ms})",
                )
            else:
                self.freeze.limit_s = session_ms / 1000
        self.crash_watch.connect()
        self.consumer.subscribe(
            topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self.log.info(
            "subscribed",
            topics=topics,
            group=self.group,
            mode=self.ws.mode.value,
            assignment=self.ws.assignment.value,
            session_s=self.freeze.limit_s,
        )

    def _assignment_mismatch(self) -> AssignmentMismatch:
        """The broker refused to let us join (INCONSISTENT_GROUP_PROTOCOL): it does so on every
        retry, so say which setting differs and stop."""
        theirs = group_assignor(self.settings, self.group)
        ours = self.ws.assignment.value
        return AssignmentMismatch(
            f"consumer group {self.group!r} refuses this worker: its members use the "
            f"{theirs or 'another'!r} assignment and this worker has worker.assignment="
            f"{ours!r}. Every worker of a group needs the same worker.assignment: use the "
            "group's, or stop all its workers before changing it (or use another "
            "worker.group_id)"
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Assign ourselves so the partitions can be paused before any fetch: they stay paused
        # until their ledger view is restored. Eager (range) hands over the whole assignment.
        if self.ws.assignment is Assignment.RANGE:
            consumer.assign(partitions)
        else:
            consumer.incremental_assign(partitions)
        if partitions:
            consumer.pause(partitions)
        self._joined = True
        self.metrics.rebalances.inc()
        ledger_tps = []
        for p in partitions:
            tp = (p.topic, p.partition)
            jt = self.job_of_topic[p.topic]
            self._gen += 1
            ltp = (ledger_topic(base_of(p.topic)), p.partition)
            self.parts[tp] = PartitionState(tp, jt, ltp, tier_delay(p.topic) is not None, self._gen)
            ledger_tps.append(ltp)
        self.ledger.acquire(ledger_tps)
        self.log.info("assigned", partitions=[f"{p.topic}[{p.partition}]" for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions if (p.topic, p.partition) in self.parts]
        self.metrics.rebalances.inc()
        for tp in tps:
            self.parts[tp].queues.drain()  # not started: their offsets stay uncommitted
        self._withdraw(set(tps))
        self.crash_watch.cancel(tps, alone_only=True)
        self._waiting = [w for w in self._waiting if w[2].tp not in tps]
        self._deferred = [d for d in self._deferred if d[0].tp not in tps]
        deadline = time.monotonic() + self.ws.revoke_grace_s
        self._in_rebalance = True
        try:
            while any(self.parts[tp].running for tp in tps) and time.monotonic() < deadline:
                self._drain_results(block_s=0.05)
                self._serve_producer()
            self._commit()
        finally:
            self._in_rebalance = False
        self.crash_watch.release(tps)
        for tp in tps:
            self._drop(tp)
        self.log.info("revoked", partitions=[f"{t}[{p}]" for t, p in tps])

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Another member may own these now: whatever we hold for them must not be committed.
        frozen = self.freeze.check()
        with contextlib.suppress(ProducerFenced):  # renewed when the interval is redone
            self.committer.abort()
        self.ledger.aborted()
        self.history.aborted()
        self.crash_watch.forget([(p.topic, p.partition) for p in partitions])
        for p in partitions:
            self._drop((p.topic, p.partition))
        if frozen and self.ws.mode is Mode.TRANSACTIONAL:
            # This process stood still past the session (SIGSTOP, a paused VM): a zombie. Its
            # handler threads may have run on since; stop rather than guess what is stale.
            raise WorkerFenced(
                "partitions lost (session timed out); stopping so nothing stale is written"
            )
        # The loop kept running but could not reach the group (a broker restart, a network
        # split): the aborted interval is redone from the last commit and the group rejoined.
        lost = [f"{p.topic}[{p.partition}]" for p in partitions]
        self.log.warning("partitions_lost", partitions=lost)
        self._broken = None
        self._rewind()
        self.freeze.clear()

    def _advance_idle(self) -> None:
        """Partitions with nothing in flight commit the consumer's position, which is past
        transaction markers (consumers/offsets.py). Not inside a rebalance callback: the poll
        running it may have counted records in the position that it has not handed over yet."""
        if self._in_rebalance:
            return
        idle = [
            TopicPartition(*tp)
            for tp, ps in self.parts.items()
            if not ps.offsets.pending and not ps.gated_until_ms  # a gated tier seeked back
        ]
        if not idle:
            return
        try:
            positions = self.consumer.position(idle)
        except KafkaException:
            return  # the next commit tries again
        for tpo in positions:
            ps = self.parts.get((tpo.topic, tpo.partition))
            if ps is not None and tpo.error is None:
                ps.offsets.advance_to(tpo.offset)

    def _drop(self, tp: TP) -> None:
        ps = self.parts.pop(tp, None)
        if ps is not None:
            self.ledger.release(ps.ledger_tp)
            self.metrics.drop_lag(*tp)

    def _abort_interval(self, renew: bool = False) -> None:
        """Give up everything since the last commit (none of it is visible) and redo it."""
        reason = self._broken
        if self.freeze.check():
            # Frozen past the session: the group moved on and our transaction was timed out.
            self.ledger.aborted()
            self.history.aborted()
            raise WorkerFenced(f"stood still past the session, then: {reason}")
        self.log.warning("interval_aborted", reason=reason)
        self.metrics.aborts.inc()
        self._broken = None
        if not renew:
            with contextlib.suppress(ProducerFenced):  # the committer notes it as fenced
                self.committer.abort()
        # A fenced producer fails every later call, even when this abort had nothing to do.
        if renew or self.committer.fenced:
            self._renew_producer(reason)
        self._rewind()

    def _renew_producer(self, reason: str | None) -> None:
        """Our transactional id is ours alone, so a fenced producer means the broker timed out
        our transaction (an outage longer than transaction.timeout.ms), not a second owner: a
        new producer under the same id bumps the epoch and goes on. Waits out an outage."""
        self.log.warning("producer_renewed", reason=reason)
        deadline = time.monotonic() + RENEW_LIMIT_S
        while True:
            self.health.beat()
            publisher = Publisher(
                self.settings, self.registry, producer_config=self._producer_conf
            )
            try:
                committer = Committer(self.ws.mode, self.consumer, publisher.producer)
                break
            except WorkerFenced as e:
                if time.monotonic() >= deadline:
                    raise WorkerFenced(f"cannot renew the producer: {e}") from None
                self.log.warning("producer_renew_retry", error=str(e))
        self.publisher, self.producer, self.committer = publisher, publisher.producer, committer

    def _rewind(self) -> None:
        """Nothing since the last commit became visible: redo it. Every owned partition goes
        back to its committed offset with fresh state; results of jobs still running belong to
        the old generation and are ignored."""
        self.ledger.aborted()
        self.history.aborted()
        self._waiting.clear()
        self._deferred.clear()
        self.crash_watch.cancel()  # not handed to the executor yet: redone with the rest
        for ps in self.parts.values():
            ps.queues.drain()
        self._withdraw()
        # Handlers still running would overlap with the redone jobs of their keys (order is
        # per key): let them end first, their outcomes dropped (hung ones end at their timeout).
        deadline = time.monotonic() + self.ws.revoke_grace_s
        while any(ps.running for ps in self.parts.values()) and time.monotonic() < deadline:
            self._drain_results(block_s=0.05, discard=True)
        self._finished_since_commit = 0
        self._last_commit = time.monotonic()
        if not self.parts:
            return
        try:
            committed = self._committed_offsets()
            for tpo in committed:
                tp = (tpo.topic, tpo.partition)
                old = self.parts[tp]
                self._gen += 1
                self.parts[tp] = PartitionState(
                    tp, old.job_type, old.ledger_tp, old.is_tier, self._gen, paused=old.paused
                )
                start = tpo.offset if tpo.offset >= 0 else OFFSET_BEGINNING
                self.consumer.seek(TopicPartition(tpo.topic, tpo.partition, start))
        except Exception as e:
            # Could not move back: stop rather than skip records (nothing was committed).
            raise WorkerError(f"cannot rewind after an aborted commit: {e}") from None

    def _committed_offsets(self, attempts: int = 6) -> list[TopicPartition]:
        """The group's committed offsets, waiting out a broker restart (up to a minute)."""
        tps = [TopicPartition(*tp) for tp in self.parts]
        for attempt in range(attempts):
            try:
                return list(self.consumer.committed(tps, timeout=10))
            except KafkaException:
                if attempt == attempts - 1:
                    raise
                self.health.beat()
                self.log.warning("committed_offsets_retry", attempt=attempt + 1)
        raise AssertionError("unreachable")
