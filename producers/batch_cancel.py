"""Cancelling a batch (`Publisher.cancel_batch`, `jobstream jobs cancel --batch`): its members
without a final outcome are cancelled (producers/cancel.py, one audit record), and each one
cancelled gets its `cancelled` member record in jobstream.batches, so the batch still closes
(its on_complete runs with the cancelled count; on_success does not). Member ids derive from
the batch id, so only the batch record is read."""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import Producer

from jobstream.config.kafka import client_config
from jobstream.config.topics import BATCHES_PARTITIONS, BATCHES_TOPIC
from jobstream.producers.cancel import CancelResult
from jobstream.producers.errors import InvalidJob, PublishError, check_id
from jobstream.schemas import batch_record as br


class UnknownBatch(InvalidJob):
    """No batch record with this id on jobstream.batches."""


def cancel_batch(pub: Any, batch_id: str, timeout: float = 30.0,
                 confirm_timeout: float = 10.0,
                 job_type: str | None = None) -> list[CancelResult]:
    from jobstream.consumers.batches.topic import read_batch

    check_id("batch_id", batch_id)
    entry = read_batch(pub.settings, batch_id)
    if entry is None or entry.batch is None:
        raise UnknownBatch(f"batch {batch_id}: no such batch on {BATCHES_TOPIC}")
    b = entry.batch
    if job_type is not None and job_type != b.job_type:
        raise InvalidJob(f"batch {batch_id}: its members are {b.job_type}, not {job_type}")
    pub.registry.latest(b.job_type)
    if b.state == br.CLOSED:
        return []  # every member has a final outcome
    pending = [(mid, b.key) for i in range(b.total)
               if (mid := br.member_id(batch_id, i)) not in entry.outcomes]
    if not pending:
        return []
    results = pub.cancel_many(b.job_type, pending, timeout, confirm_timeout)
    done = [r.job_id for r in results if r.outcome == "cancelled"]
    if done:
        _write_cancelled(pub, batch_id, done, timeout)
    return list(results)


def _write_cancelled(pub: Any, batch_id: str, members: list[str], timeout: float) -> None:
    p = Producer(client_config(pub.settings.kafka, **{"enable.idempotence": True,
                                                      "acks": "all"}))
    part = br.partition_of(batch_id, BATCHES_PARTITIONS)
    errors: list[Any] = []
    left = [len(members)]
    done = threading.Event()

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)
        left[0] -= 1
        if left[0] == 0:
            done.set()

    now = int(time.time() * 1000)
    for mid in members:
        p.produce(BATCHES_TOPIC, br.encode_member(br.CANCELLED, now), br.member_key(batch_id, mid),
                  partition=part, on_delivery=on_delivery)
    deadline = time.monotonic() + timeout
    while not done.is_set():
        if time.monotonic() > deadline:
            raise PublishError(f"batch {batch_id}: cancelled members' records not acknowledged "
                               f"in {timeout}s")
        p.poll(0.05)
    if errors:
        raise PublishError(f"batch {batch_id}: could not write a cancelled member's record: "
                           f"{errors[0].str()}")
