"""The consumer group: joining it (topics checked first), and its callbacks as partitions come
(assign), go (revoke: let running jobs end, commit, drop) or are lost (nothing of ours may be
committed for them: abort and redo from the last commit)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from jobstream.config.settings import Assignment as AssignmentKind
from jobstream.config.settings import Mode, Settings
from jobstream.config.topics import JobTopics
from jobstream.consumers.errors import AssignmentMismatch, WorkerError, WorkerFenced
from jobstream.consumers.ops.topic_plan import group_assignor, group_session_ms
from jobstream.consumers.runtime.assignment import Assignment
from jobstream.consumers.runtime.commit import ProducerFenced
from jobstream.consumers.runtime.crashes import CrashWatch
from jobstream.consumers.runtime.dispatch import Dispatcher
from jobstream.consumers.runtime.freeze import FreezeWatch
from jobstream.consumers.runtime.hooks import Hooks
from jobstream.consumers.runtime.interval import Interval
from jobstream.consumers.runtime.ledger import Ledger
from jobstream.consumers.runtime.types import TP


class Group:
    def __init__(
        self,
        settings: Settings,
        group: str,
        consumer: Consumer,
        topics: dict[str, JobTopics],
        assignment: Assignment,
        interval: Interval,
        dispatcher: Dispatcher,
        ledger: Ledger,
        crash_watch: CrashWatch,
        freeze: FreezeWatch,
        hooks: Hooks,
        log: Any,
        *,
        settle: Callable[[list[TP]], None],
        commit: Callable[[], None],
        rewind: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.ws = settings.worker
        self.group = group
        self.consumer = consumer
        self.topics = topics
        self.assignment = assignment
        self.interval = interval
        self.dispatcher = dispatcher
        self.ledger = ledger
        self.crash_watch = crash_watch
        self.freeze = freeze
        self.hooks = hooks
        self.log = log
        self.settle = settle
        self.commit = commit
        self.rewind = rewind
        self.joined = False
        self.in_rebalance = False  # inside on_revoke (its commit must not move to positions)

    def subscribe(self) -> None:
        topics = sorted(self.assignment.job_of_topic)
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
        if self.ws.assignment is AssignmentKind.CONSUMER_PROTOCOL:
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
            topics, on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost
        )
        self.log.info(
            "subscribed",
            topics=topics,
            group=self.group,
            mode=self.ws.mode.value,
            assignment=self.ws.assignment.value,
            session_s=self.freeze.limit_s,
        )

    def mismatch(self) -> AssignmentMismatch:
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

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Assign ourselves so the partitions can be paused before any fetch: they stay paused
        # until their ledger view is restored. Eager (range) hands over the whole assignment.
        if self.ws.assignment is AssignmentKind.RANGE:
            consumer.assign(partitions)
        else:
            consumer.incremental_assign(partitions)
        if partitions:
            consumer.pause(partitions)
        self.joined = True
        self.ledger.acquire(self.assignment.add(partitions))
        self.hooks.on_assign([(p.topic, p.partition) for p in partitions])

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [tp for p in partitions if (tp := (p.topic, p.partition)) in self.assignment]
        self.dispatcher.forget(tps)  # not started: their offsets stay uncommitted
        self.crash_watch.cancel(tps, alone_only=True)
        self.in_rebalance = True
        try:
            self.settle(tps)
            self.commit()
        finally:
            self.in_rebalance = False
        self.crash_watch.release(tps)
        for tp in tps:
            self.assignment.drop(tp)
        self.hooks.on_revoke(tps)

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Another member may own these now: whatever we hold for them must not be committed.
        frozen = self.freeze.check()
        with contextlib.suppress(ProducerFenced):  # renewed when the interval is redone
            self.interval.abort()
        self.ledger.aborted()
        self.crash_watch.forget([(p.topic, p.partition) for p in partitions])
        for p in partitions:
            self.assignment.drop((p.topic, p.partition))
        if frozen and self.ws.mode is Mode.TRANSACTIONAL:
            # This process stood still past the session (SIGSTOP, a paused VM): a zombie. Its
            # handler threads may have run on since; stop rather than guess what is stale.
            raise WorkerFenced(
                "partitions lost (session timed out); stopping so nothing stale is written"
            )
        # The loop kept running but could not reach the group (a broker restart, a network
        # split): the aborted interval is redone from the last commit and the group rejoined.
        self.hooks.on_revoke([(p.topic, p.partition) for p in partitions], lost=True)
        self.interval.given_up()
        self.rewind()
        self.freeze.clear()

    def advance_idle(self) -> None:
        """Partitions with nothing in flight commit the consumer's position, which is past
        transaction markers (consumers/runtime/offsets.py). Not inside a rebalance callback: the
        poll running it may have counted records in the position that it has not handed over
        yet."""
        if self.in_rebalance:
            return
        idle = [
            TopicPartition(*ps.tp)
            for ps in self.assignment
            if not ps.offsets.pending and not ps.gated_until_ms  # a gated tier seeked back
        ]
        if not idle:
            return
        try:
            positions = self.consumer.position(idle)
        except KafkaException:
            return  # the next commit tries again
        for tpo in positions:
            ps = self.assignment.get((tpo.topic, tpo.partition))
            if ps is not None and tpo.error is None:
                ps.offsets.advance_to(tpo.offset)
