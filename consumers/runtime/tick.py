"""The loop's slower periodic checks: readiness (joined, restored, brokers answering), a probe
while the brokers are down, the gauges, and brokers that keep refusing our credentials."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException

from jobstream.config.settings import Settings
from jobstream.consumers.errors import WorkerError
from jobstream.consumers.health import NO_BROKER, NOT_JOINED, READY, RESTORING, Health
from jobstream.consumers.metrics import Metrics
from jobstream.consumers.runtime.assignment import Assignment
from jobstream.consumers.runtime.ledger import Ledger
from jobstream.producers.publisher import Publisher

AUTH_FAILURE_LIMIT_S = 60.0
GAUGES_S = 5.0


class Upkeep:
    def __init__(
        self,
        settings: Settings,
        consumer: Consumer,
        assignment: Assignment,
        ledger: Ledger,
        metrics: Metrics,
        health: Health,
        publisher: Callable[[], Publisher],
        joined: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.assignment = assignment
        self.ledger = ledger
        self.metrics = metrics
        self.health = health
        self.publisher = publisher  # the current one (the interval renews it)
        self.joined = joined
        self.brokers_down = False
        self._last_probe = 0.0
        self._last_lag = 0.0

    def client_error(self, err: KafkaError) -> None:
        self.publisher().errors(err)  # one watch for the consumer and the producer
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self.brokers_down = True  # not ready until a broker answers again (see run)

    def run(self, now: float) -> None:
        self.ledger.follow(self.assignment.generation,
                           ((ps.tp, ps.ledger_tp) for ps in self.assignment))
        if now - self._last_lag >= GAUGES_S:
            self._last_lag = now
            self.metrics.in_flight.set(self.assignment.in_flight())
            self.metrics.ledger_entries.set(self.ledger.entries())
            self.ledger.expire()
            self.metrics.refresh_lag(self.consumer, list(self.assignment.parts))
            errors = self.publisher().errors
            if errors.failing_for(now) >= AUTH_FAILURE_LIMIT_S:
                # Revoked credentials or a replaced CA: retrying will not fix it, and a
                # restart makes the start-up check say so plainly.
                raise WorkerError(f"the brokers keep refusing us{errors.explain()}")
        if self.brokers_down and now - self._last_probe >= 1.0:
            self._last_probe = now
            self.brokers_down = not self._broker_answers()
        self._set_readiness()

    def _set_readiness(self) -> None:
        joined = self.joined()
        restoring = self.assignment.restoring()
        health = self.health
        health.ready = joined and not restoring and not self.brokers_down
        if health.ready:
            health.reason = READY
        elif not joined:
            health.reason = NOT_JOINED
        elif self.brokers_down:
            health.reason = NO_BROKER.format(bootstrap=self.settings.kafka.bootstrap_servers)
        else:
            health.reason = RESTORING

    def _broker_answers(self) -> bool:
        try:
            self.consumer.list_topics(timeout=0.5)
            return True
        except KafkaException:
            return False
