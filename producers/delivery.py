"""Delivery reports of the jobs publish_async sends without an on_delivery callback: before,
nobody heard of their failures. Failures are kept with their job ids until flush() or close()
raises them, each once, as a DeliveryError."""

from __future__ import annotations

import functools
import threading

from confluent_kafka import KafkaError, Message

from jobstream.producers.errors import Undelivered

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
