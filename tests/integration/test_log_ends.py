"""clients.LogEnds, what the owner threads (scheduler, recurring schedules, batches) and the
ledger restore take as a partition's end, on the real broker: the true high watermark, past the
records of a transaction still open, where a read_committed consumer's watermark query stops at
the last stable offset (see test_scheduler_restore's open-dispatch test for what that cost)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from jobstream.config.kafka import client_config
from jobstream.consumers.runtime.clients import LogEnds
from tests.support.harness import Stack


def test_the_end_counts_a_transaction_still_open(stack_factory: Any) -> None:
    stack: Stack = stack_factory()
    topic, kafka = stack.topics.scheduled, stack.settings.kafka
    plain = Producer(client_config(kafka))
    for i in range(3):
        plain.produce(topic, b"x", f"k{i}".encode(), partition=0)
    plain.flush(30)
    txn = Producer(client_config(kafka, **{"transactional.id": f"ends-{uuid.uuid4().hex}"}))
    txn.init_transactions(30)
    txn.begin_transaction()
    for i in range(5):
        txn.produce(topic, b"y", f"t{i}".encode(), partition=0)
    txn.flush(30)
    committed = Consumer(client_config(kafka, **{"group.id": "ends-probe",
                                                 "isolation.level": "read_committed"}))
    ends = LogEnds(stack.settings, "ends-probe")
    try:
        stable = committed.get_watermark_offsets(TopicPartition(topic, 0), timeout=10,
                                                 cached=False)
        assert stable == (0, 3)  # what the owners used to take for the end
        assert ends.of(topic, 0) == (0, 8)
        txn.commit_transaction(30)
        # The marker lands shortly after the commit returns (CI saw (0, 8) at once, which is
        # the very gap the owners must not read past): never more, (0, 9) within seconds.
        deadline = time.monotonic() + 10
        seen = ends.of(topic, 0)
        while seen != (0, 9) and time.monotonic() < deadline:
            assert seen == (0, 8), seen
            time.sleep(0.05)
            seen = ends.of(topic, 0)
        assert seen == (0, 9)  # and the commit marker
    finally:
        committed.close()
        ends.close()
