"""FetchWaker against the real broker: with every partition paused, a resumed partition's
first record arrives within fetch.wait.max.ms-ish when woken, ~1 s when not."""

from __future__ import annotations

import statistics
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from jobstream.consumers.runtime.fetch_wake import FetchWaker

ROUNDS = 6


def _resume_latencies(bootstrap: str, topic: str, wake: bool) -> list[float]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-{wake}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 25,
        }
    )
    tps = [TopicPartition(topic, p) for p in range(3)]
    consumer.assign(tps)
    waker = FetchWaker(consumer) if wake else None
    took = []
    try:
        assert consumer.consume(1, timeout=10), "no first record"
        for _ in range(ROUNDS):
            consumer.pause(tps)
            time.sleep(0.05)  # the prefetch is dropped; nothing is in flight now
            t0 = time.monotonic()
            consumer.resume(tps)
            if waker is not None:
                waker.wake((topic, p) for p in range(3))
            msgs: list = []
            while not msgs and time.monotonic() - t0 < 5:
                msgs = consumer.consume(1, timeout=0.002)
            took.append(time.monotonic() - t0)
    finally:
        consumer.close()
    return took


def test_a_woken_resume_refetches_at_once(bootstrap: str, unique: str) -> None:
    topic = f"wake-{unique}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(5000):
        producer.produce(topic, b"x" * 100, key=str(i).encode())
    producer.flush(30)

    woken = statistics.median(_resume_latencies(bootstrap, topic, wake=True))
    unwoken = statistics.median(_resume_latencies(bootstrap, topic, wake=False))
    print(
        f"\nresume -> first record, median: woken {woken * 1000:.0f} ms, "
        f"not woken {unwoken * 1000:.0f} ms"
    )
    assert woken < 0.4
    assert woken < unwoken / 2
