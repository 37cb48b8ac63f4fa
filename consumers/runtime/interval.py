"""One commit interval: a transaction, or produce + flush + commit at least once. Its state is
an enum with a reason (open, broken, aborted, committed); a write that fails breaks it, and a
broken interval is aborted and redone from the last commit (consumers/runtime/recovery.py). It
also owns the producer side (publisher, producer, committer), renewed when the broker fenced
our transactional producer."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer

from jobstream.config.settings import WorkerSettings
from jobstream.consumers.errors import WorkerFenced
from jobstream.consumers.health import Health
from jobstream.consumers.runtime.clients import Reports
from jobstream.consumers.runtime.commit import (
    CommitAborted,
    Committer,
    Offsets,
    ProducerFenced,
    kafka_exception,
)
from jobstream.producers.publisher import Publisher

RENEW_LIMIT_S = 300.0


class State(StrEnum):
    OPEN = "open"  # records and finished offsets are being added
    BROKEN = "broken"  # a write failed: it cannot commit, only be aborted and redone
    ABORTED = "aborted"  # given up; the next one starts from the last commit
    COMMITTED = "committed"


class Interval:
    def __init__(
        self,
        ws: WorkerSettings,
        consumer: Consumer,
        make_publisher: Callable[[], Publisher],
        health: Health,
        log: Any,
    ) -> None:
        self.ws = ws
        self.consumer = consumer
        self.make_publisher = make_publisher
        self.health = health
        self.log = log
        self.publisher = make_publisher()
        self.producer: Producer = self.publisher.producer
        self.committer = Committer(ws.mode, consumer, self.producer)
        self._reports = Reports()
        self.state = State.OPEN
        self.reason: str | None = None
        self.last: State | None = None  # how the previous interval ended
        self.renew = False  # the producer was fenced at the commit: renew it for the redo
        self.finished = 0  # source offsets finished since the last commit
        self.started = time.monotonic()
        # Told how each interval ended (committed or aborted): parts that keep per-interval
        # state (the history chain heads) settle it then.
        self.on_end: list[Callable[[State], None]] = []

    @property
    def broken(self) -> bool:
        return self.state is State.BROKEN

    def break_(self, reason: str) -> None:
        """This interval cannot commit any more; the first reason is the one kept."""
        if self.state is not State.BROKEN:
            self.state = State.BROKEN
            self.reason = reason

    def producer_failed(self, raised: BaseException, what: str) -> None:
        """A producer call raised: note a fencing error for the redo (it renews the producer
        then) and break the interval. Anything but a Kafka error is raised again."""
        err = kafka_exception(raised).args[0]
        self.committer.saw(err)
        self.break_(f"{what}: {err}")

    def serve(self, flush_s: float | None = None) -> bool:
        """Serve delivery reports (and wait for them all with flush_s); True when any were.
        librdkafka reports a fatal producer error (fenced: a thawed zombie) by raising it from
        one poll or flush: that breaks the interval, and its abort decides between stopping
        and renewing."""
        try:
            if flush_s is None:
                return bool(self._reports.serve(self.producer))
            self.producer.flush(flush_s)
        except (KafkaException, SystemError) as raised:
            self.producer_failed(raised, "producer failed")
        return False

    def due(self, now: float) -> bool:
        return (
            now - self.started
        ) * 1000 >= self.ws.commit_interval_ms or self.finished >= self.ws.commit_max_records

    def commit(self, offsets: Offsets, wait: bool) -> bool:
        """Commit the interval with `offsets`. False: it broke (the caller aborts and redoes
        it; `renew` says whether the producer must be renewed first)."""
        try:
            self.committer.commit(offsets, wait=wait)
        except CommitAborted as e:
            self.break_(str(e))
            return False
        except ProducerFenced as e:
            self.break_(str(e))
            self.renew = True
            return False
        self._next(State.COMMITTED)
        return True

    def abort(self) -> None:
        """Abort the open transaction (raises ProducerFenced when the producer is unusable)."""
        self.committer.abort()

    def given_up(self) -> None:
        """Aborted (or lost): what follows is a new interval, from the last commit."""
        self._next(State.ABORTED)

    def _next(self, ended: State) -> None:
        for listener in self.on_end:
            listener(ended)
        self.last = ended
        self.state, self.reason, self.renew = State.OPEN, None, False
        self.finished = 0
        self.started = time.monotonic()

    def renew_producer(self, reason: str | None) -> None:
        """Our transactional id is ours alone, so a fenced producer means the broker timed out
        our transaction (an outage longer than transaction.timeout.ms), not a second owner: a
        new producer under the same id bumps the epoch and goes on. Waits out an outage."""
        self.log.warning("producer_renewed", reason=reason)
        deadline = time.monotonic() + RENEW_LIMIT_S
        while True:
            self.health.beat()
            publisher = self.make_publisher()
            try:
                committer = Committer(self.ws.mode, self.consumer, publisher.producer)
                break
            except WorkerFenced as e:
                if time.monotonic() >= deadline:
                    raise WorkerFenced(f"cannot renew the producer: {e}") from None
                self.log.warning("producer_renew_retry", error=str(e))
        self.publisher, self.producer, self.committer = publisher, publisher.producer, committer
