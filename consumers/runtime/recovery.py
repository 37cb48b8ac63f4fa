"""Giving an interval up: abort it (nothing of it is visible), renew a fenced producer, and
rewind every owned partition to its last commit with fresh state (a new generation), so the
interval is redone; results of jobs still running then belong to the old generation."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from jobstream.config.settings import WorkerSettings
from jobstream.consumers.errors import WorkerError, WorkerFenced
from jobstream.consumers.health import Health
from jobstream.consumers.metrics import Metrics
from jobstream.consumers.runtime.assignment import Assignment
from jobstream.consumers.runtime.commit import ProducerFenced
from jobstream.consumers.runtime.crashes import CrashWatch
from jobstream.consumers.runtime.dispatch import Dispatcher
from jobstream.consumers.runtime.freeze import FreezeWatch
from jobstream.consumers.runtime.interval import Interval
from jobstream.consumers.runtime.ledger import Ledger


class Recovery:
    def __init__(
        self,
        ws: WorkerSettings,
        consumer: Consumer,
        assignment: Assignment,
        interval: Interval,
        dispatcher: Dispatcher,
        ledger: Ledger,
        crash_watch: CrashWatch,
        freeze: FreezeWatch,
        health: Health,
        metrics: Metrics,
        log: Any,
        *,
        discard_running: Callable[[float], None],
    ) -> None:
        self.ws = ws
        self.consumer = consumer
        self.assignment = assignment
        self.interval = interval
        self.dispatcher = dispatcher
        self.ledger = ledger
        self.crash_watch = crash_watch
        self.freeze = freeze
        self.health = health
        self.metrics = metrics
        self.log = log
        self.discard_running = discard_running

    def abort_interval(self, renew: bool = False) -> None:
        """Give up everything since the last commit (none of it is visible) and redo it."""
        interval = self.interval
        reason = interval.reason
        if self.freeze.check():
            # Frozen past the session: the group moved on and our transaction was timed out.
            self.ledger.aborted()
            raise WorkerFenced(f"stood still past the session, then: {reason}")
        self.log.warning("interval_aborted", reason=reason)
        self.metrics.aborts.inc()
        interval.given_up()
        if not renew:
            with contextlib.suppress(ProducerFenced):  # the committer notes it as fenced
                interval.abort()
        # A fenced producer fails every later call, even when this abort had nothing to do.
        if renew or interval.committer.fenced:
            interval.renew_producer(reason)
        self.rewind()

    def rewind(self) -> None:
        """Nothing since the last commit became visible: redo it. Every owned partition goes
        back to its committed offset with fresh state; results of jobs still running belong to
        the old generation and are ignored."""
        self.ledger.aborted()
        self.crash_watch.cancel()  # not handed to the executor yet: redone with the rest
        self.dispatcher.forget()
        # Handlers still running would overlap with the redone jobs of their keys (order is
        # per key): let them end first, their outcomes dropped (hung ones end at their timeout).
        self.discard_running(self.ws.revoke_grace_s)
        self.interval.given_up()
        if not len(self.assignment):
            return
        try:
            for tpo in self._committed_offsets():
                self.assignment.renew((tpo.topic, tpo.partition))
                start = tpo.offset if tpo.offset >= 0 else OFFSET_BEGINNING
                self.consumer.seek(TopicPartition(tpo.topic, tpo.partition, start))
        except Exception as e:
            # Could not move back: stop rather than skip records (nothing was committed).
            raise WorkerError(f"cannot rewind after an aborted commit: {e}") from None

    def _committed_offsets(self, attempts: int = 6) -> list[TopicPartition]:
        """The group's committed offsets, waiting out a broker restart (up to a minute)."""
        tps = [TopicPartition(*ps.tp) for ps in self.assignment]
        for attempt in range(attempts):
            try:
                return list(self.consumer.committed(tps, timeout=10))
            except KafkaException:
                if attempt == attempts - 1:
                    raise
                self.health.beat()
                self.log.warning("committed_offsets_retry", attempt=attempt + 1)
        raise AssertionError("unreachable")
