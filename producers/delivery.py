"""Delivery reports of the jobs publish_async sends without an on_delivery callback: before,
nobody heard of their failures. Failures are kept with their job ids until flush() or close()
raises them, each once, as a DeliveryError."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message

from jobstream.producers.errors import DeliveryError, Undelivered

DeliveryCallback = functools.partial[None]

# Failures kept with their ids between two flushes; beyond that only counted, so a service that
# never flushes during a long outage does not grow without bound.
MAX_KEPT = 100_000

_PURGED = {
    KafkaError._PURGE_QUEUE: "never sent",
    KafkaError._PURGE_INFLIGHT: "sent; it may have been written",
}


def given_up(u: Undelivered) -> bool:
    """True for a job close() purged (as opposed to one the broker or librdkafka failed)."""
    return u.error is not None and u.error.code() in _PURGED


class DeliveryWatch:
    """Per-job delivery callbacks that remember failures. Thread-safe: reports arrive in
    whichever thread polls the producer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failed: list[tuple[str, str, KafkaError]] = []
        self._dropped = 0

    def callback(self, job_id: str, topic: str) -> DeliveryCallback:
        # A partial, not a closure: the cheapest callable that carries the id (a delivery
        # report carries no headers).
        return functools.partial(self._report, job_id, topic)

    def _report(self, job_id: str, topic: str, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            return
        with self._lock:
            if len(self._failed) < MAX_KEPT:
                self._failed.append((job_id, topic, err))
            else:
                self._dropped += 1

    def take(self, waited_s: float | None = None) -> tuple[list[Undelivered], int]:
        """The failures reported since the last take, and how many more were only counted.
        `waited_s`: how long close() waited before giving up the jobs it purged."""
        with self._lock:
            failed, self._failed = self._failed, []
            dropped, self._dropped = self._dropped, 0
        out = []
        for job_id, topic, err in failed:
            purged = _PURGED.get(err.code())
            reason = (
                f"not acknowledged within {waited_s:g}s ({purged})"
                if purged and waited_s is not None
                else err.str()
            )
            out.append(Undelivered(job_id, topic, reason, err))
        return out, dropped


def flush(producer: Any, watch: DeliveryWatch, timeout: float, where: Callable[[], str]) -> int:
    """Publisher.flush: wait for outstanding deliveries; how many are still queued. Raises the
    failures reported since the last flush (DeliveryError). `where`: the brokers, and why they
    failed if known."""
    remaining = int(producer.flush(timeout))
    undelivered, unnamed = watch.take()
    if undelivered or unnamed:
        raise DeliveryError(undelivered, note=_note(undelivered, unnamed, where))
    return remaining


def close(producer: Any, watch: DeliveryWatch, timeout: float, where: Callable[[], str]) -> None:
    """Publisher.close: deliver what is queued within `timeout`, give up the rest, and raise a
    DeliveryError naming every job that was not delivered."""
    left = int(producer.flush(timeout))
    if left:
        # Nobody serves this producer after close: give up the rest now (as Kafka's Java
        # client does), so each job is reported with its id instead of vanishing later.
        producer.purge(in_queue=True, in_flight=True)
        producer.flush(5.0)  # serves the purge reports (at once: nothing is left)
    undelivered, unnamed = watch.take(waited_s=timeout)
    purged = sum(1 for u in undelivered if given_up(u))
    others = max(0, left - purged)  # records with their own callbacks, told there
    if undelivered or unnamed or others:
        note = (f" within {timeout:g}s" if others else "") + _note(undelivered, unnamed, where)
        raise DeliveryError(undelivered, others, note)


def _note(undelivered: list[Undelivered], unnamed: int, where: Callable[[], str]) -> str:
    note = f", and {unnamed} more jobs (ids not kept)" if unnamed else ""
    if not undelivered or any(u.error and u.error.code() < 0 for u in undelivered):
        note += where()  # given up locally (timed out, purged): where we tried, and why
    return note
