"""Waking librdkafka's fetcher after a resume.

The worker pauses its partitions while its buffer of fetched jobs is full. librdkafka notices
a resumed partition only when the broker thread that fetches it next wakes up: with every
partition paused nothing is in flight, and that takes up to a second, during which a fast
worker sits idle (measured: ~950 ms from resume() to the first record, whatever the fetch
settings). A request to the partition's leader wakes that thread; the fetch then goes out
within fetch.wait.max.ms (measured: ~3 ms). ListOffsets (get_watermark_offsets) is the
cheapest request. It is sent from the poll thread right after the resume: sent from a side
thread while the poll thread sat in consume(), it waited out the same second.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

TP = tuple[str, int]
WAKE_TIMEOUT_S = 0.5  # a wake-up call: never worth more of the loop's time


class FetchWaker:
    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self._leaders: dict[TP, int] = {}  # partition -> leader broker id, read when first seen

    def wake(self, resumed: Iterable[TP]) -> None:
        """One request per leader of the resumed partitions."""
        for topic, partition in self._one_per_leader(set(resumed)):
            # Only a wake-up call: a failure costs at most the old delay.
            with contextlib.suppress(KafkaException, RuntimeError):
                self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=WAKE_TIMEOUT_S, cached=False
                )

    def _one_per_leader(self, tps: set[TP]) -> list[TP]:
        for topic in {t for t, p in tps if (t, p) not in self._leaders}:
            with contextlib.suppress(KafkaException, RuntimeError):
                meta = self._consumer.list_topics(topic, timeout=WAKE_TIMEOUT_S).topics.get(topic)
                for pid, pm in (meta.partitions if meta else {}).items():
                    self._leaders[(topic, pid)] = pm.leader
        chosen: dict[int, TP] = {}
        for tp in sorted(tps):
            chosen.setdefault(self._leaders.get(tp, -1), tp)
        return list(chosen.values())
