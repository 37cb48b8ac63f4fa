"""Waking librdkafka's fetcher after a resume.

The worker pauses its partitions while its buffer of fetched jobs is full. librdkafka notices
a resumed partition only when the broker thread that fetches it next wakes up: with every
partition paused nothing is in flight, and that takes up to a second, during which a fast
worker sits idle (measured: ~1 s from resume() to the first record, whatever the fetch
settings). Any request to the partition's leader wakes that thread; the fetch then goes out
within fetch.wait.max.ms. A ListOffsets request (get_watermark_offsets) is the cheapest one,
sent from a side thread so the loop never waits for the round trip.
"""

from __future__ import annotations

import contextlib
import threading

from confluent_kafka import Consumer, KafkaException, TopicPartition

TP = tuple[str, int]
MAX_PER_WAKE = 32  # resumed partitions usually share a few leaders; bound the requests


class FetchWaker:
    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self._pending: list[TP] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="js-fetch-wake", daemon=True)
        self._thread.start()

    def resumed(self, tp: TP) -> None:
        with self._lock:
            self._pending.append(tp)
        self._wake.set()

    def close(self) -> None:
        """Stop before the consumer closes (the thread must not call a closed consumer)."""
        self._closed = True
        self._wake.set()
        self._thread.join(2)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            with self._lock:
                batch, self._pending = self._pending[:MAX_PER_WAKE], []
            for topic, partition in dict.fromkeys(batch):
                if self._closed:
                    return
                # Only a wake-up call: a failure costs at most the old delay.
                with contextlib.suppress(KafkaException, RuntimeError):
                    self._consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=1, cached=False
                    )
