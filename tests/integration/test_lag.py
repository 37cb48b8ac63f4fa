"""Consumer lag as Kafka itself and the worker's metric see it, on partitions that end in
transaction markers."""

from __future__ import annotations

import urllib.request
import uuid

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from jobstream.config.kafka import client_config
from tests.support.harness import Stack, free_port


def _kafka_lag(stack: Stack, topics: list[str]) -> dict[str, int]:
    """Log end offset minus the group's committed offset per partition, read the way Kafka's
    ConsumerGroupCommand reads them: committed offsets from the group coordinator (AdminClient),
    end offsets from a read_uncommitted consumer (the real high watermark, markers included)."""
    n = stack.settings.job(stack.job_type).partitions
    tps = [TopicPartition(t, p) for t in topics for p in range(n)]
    admin = AdminClient(client_config(stack.settings.kafka))
    req = ConsumerGroupTopicPartitions(stack.group, tps)
    res = admin.list_consumer_group_offsets([req])[stack.group].result(10)
    committed = {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions}
    c = Consumer(
        client_config(
            stack.settings.kafka,
            **{"group.id": "test-lag", "isolation.level": "read_uncommitted"},
        )
    )
    try:
        lag = {}
        for tp in tps:
            _, high = c.get_watermark_offsets(tp, timeout=10)
            base = committed.get((tp.topic, tp.partition), -1)
            lag[f"{tp.topic}[{tp.partition}]"] = high - max(base, 0)
        return lag
    finally:
        c.close()


def _metric_lag(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        body = r.read().decode()
    out = {}
    for line in body.splitlines():
        if line.startswith("jobstream_consumer_lag{"):
            labels, value = line.rsplit(" ", 1)
            out[labels] = float(value)
    return out


def test_lag_reaches_zero_past_transaction_markers(stack_factory) -> None:
    """Issue 26 item 22: the worker committed "highest finished offset + 1", so a partition whose
    last record is a transaction marker (a transactional publisher's commit or abort, or the
    worker's own transaction on the retry tier it wrote to and then read) kept a lag of 1 or
    more for ever: alerts on an idle system, no scale to zero. Now a partition with nothing in
    flight commits the consumer's position, which is past the markers: lag 0 by Kafka's own
    offsets and by jobstream_consumer_lag."""
    port = free_port()
    stack: Stack = stack_factory(worker={"http_port": port})
    t = stack.topics
    pub = stack.publisher()
    txp = Producer(client_config(stack.settings.kafka, **{"transactional.id": uuid.uuid4().hex}))
    txp.init_transactions(30)

    def send(n: int, behaviour: str, prefix: str) -> list[str]:
        ids = []
        for i in range(n):
            _topic, jid, value, headers = pub.build(
                stack.job_type, {"seq": 0, "behaviour": behaviour}, key=f"{prefix}{i}"
            )
            txp.produce(t.main, value, f"{prefix}{i}".encode(), headers=headers)
            ids.append(jid)
        txp.flush(30)
        return ids

    txp.begin_transaction()
    committed = send(12, "ok", "c")
    txp.commit_transaction(30)
    txp.begin_transaction()
    send(6, "ok", "a")  # written, then aborted: never run, but they and their markers take offsets
    txp.abort_transaction(30)
    # Retried once each: the worker's own transactions leave markers after them in the tier.
    retried = stack.publish_many(
        [({"seq": 0, "behaviour": "fail_until:2"}, f"r{i}") for i in range(3)]
    )
    pub.close()

    stack.start_worker()
    stack.wait_for(
        lambda: {r["job_id"] for r in stack.runs() if r["attempt"] == 2} >= set(retried)
        and {r["job_id"] for r in stack.runs()} >= set(committed),
        90,
        "the committed and the retried jobs done",
    )
    assert not {r["key"] for r in stack.runs()} & {f"a{i}" for i in range(6)}, "aborted jobs ran"
    topics = [t.main, t.retries[0]]
    seen: dict[str, int] = {}

    def kafka_lag_zero() -> bool:
        seen.clear()
        seen.update(_kafka_lag(stack, topics))
        return not any(seen.values())

    try:
        stack.wait_for(kafka_lag_zero, 30, "lag 0 on every partition by Kafka's offsets")
    except AssertionError as e:
        raise AssertionError(f"{e}: {({k: v for k, v in seen.items() if v})}") from None
    metric: dict[str, float] = {}

    def metric_lag_zero() -> bool:
        metric.clear()
        metric.update(_metric_lag(port))
        mains = [k for k in metric if f'topic="{t.main}"' in k]
        return len(mains) == 6 and not any(metric.values())

    try:
        stack.wait_for(metric_lag_zero, 30, "jobstream_consumer_lag 0 on every partition")
    except AssertionError as e:
        raise AssertionError(f"{e}: {({k: v for k, v in metric.items() if v})}") from None
    assert stack.stop_all() == [0]
