"""Batches: a set of jobs with a completion callback (docs/workflows.md).

`Publisher.batch(job_type, payloads, on_complete=(job_type, payload))` writes the batch record
(jobstream.batches, schemas/batch_record.py) and every member in one Kafka transaction: none
of them is visible unless all are. `ctx.batch(...)` builds the same records and hands them to
the parent's interval (consumers/runtime/children.py), like `ctx.enqueue`.

Each member carries the `js-batch` header; the worker that records a member's final outcome
(succeeded or dead-lettered) writes `<batch id>/<member id>` to the batch's partition in the
same interval, and the owner of that partition (consumers/batches/owner.py) publishes the
callback once every member has one. Everything is validated before anything is sent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from confluent_kafka import KafkaException, Producer

from jobstream.config.kafka import client_config
from jobstream.config.topics import BATCHES_PARTITIONS, BATCHES_TOPIC, main_topic
from jobstream.producers.errors import InvalidJob, PublishError
from jobstream.schemas import batch_record as br
from jobstream.schemas import wire

if TYPE_CHECKING:
    from jobstream.producers.publisher import Publisher

MAX_MEMBERS: Final = 100_000
# The fields a callback's payload gets when its schema has them.
CALLBACK_FIELDS: Final = ("batch_id", "total", "succeeded", "dead_lettered", "cancelled")

Callback = tuple[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Rec:
    """One record to produce: a member job, or the batch record."""

    job_id: str
    job_type: str
    topic: str
    key: bytes
    value: bytes
    headers: wire.HeaderList
    partition: int | None


def new_batch_id() -> str:
    return uuid.uuid4().hex


def callback_payload(payload: Mapping[str, Any], batch_id: str, counts: Mapping[str, int],
                     total: int, fields: set[str]) -> dict[str, Any]:
    """The callback's payload: the one given, with the batch's id and counts set on every
    field of CALLBACK_FIELDS its schema has."""
    facts: dict[str, Any] = {"batch_id": batch_id, "total": total,
                             **{o: int(counts.get(o, 0)) for o in br.OUTCOMES}}
    return {**payload, **{k: v for k, v in facts.items() if k in fields}}


def _check_callback(pub: Publisher, what: str, cb: Any) -> tuple[str, dict[str, Any]] | None:
    if cb is None:
        return None
    if not (isinstance(cb, tuple | list) and len(cb) == 2 and isinstance(cb[0], str)
            and isinstance(cb[1], Mapping)):
        raise InvalidJob(f"batch: {what} must be (job_type, payload), got {cb!r:.100}")
    job_type, payload = cb[0], dict(cb[1])
    try:
        raw = pub.registry.latest(job_type).raw
    except KeyError as e:
        raise InvalidJob(f"batch: {what}: {e}") from None
    fields = {f["name"] for f in raw.get("fields", []) if isinstance(f, dict) and "name" in f}
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidJob(f"batch: {what} ({job_type}): the payload must be JSON (it is kept "
                         f"in the batch record): {e}") from None
    try:  # as the owner will encode it, with counts filled in
        pub.registry.encode(job_type, callback_payload(payload, "0" * 32, {}, 0, fields))
    except ValueError as e:
        raise InvalidJob(f"batch: {what} ({job_type}): {e}") from None
    return job_type, payload


def build_batch(pub: Publisher, job_type: str, payloads: Sequence[Mapping[str, Any]], *,
                batch_id: str, on_complete: Any, on_success: Any = None, key: str | None = None,
                parent_job_id: str | None = None, traceparent: str | None = None,
                parent: tuple[str, str] | None = None,
                now_ms: int = 0) -> tuple[br.Batch, list[Rec]]:
    """The batch record and the members' records, every one validated; raises InvalidJob
    (or UnknownJobType) naming the problem before anything is sent."""
    if isinstance(payloads, str | bytes | Mapping) or not isinstance(payloads, Sequence):
        raise InvalidJob(f"batch: payloads must be a list of payloads, got "
                         f"{type(payloads).__name__}")
    if not payloads:
        raise InvalidJob("batch: no payloads: a batch needs at least one member")
    if len(payloads) > MAX_MEMBERS:
        raise InvalidJob(f"batch: {len(payloads):,} members; at most {MAX_MEMBERS:,}")
    if on_complete is None:
        raise InvalidJob("batch: on_complete=(job_type, payload) is required")
    pub.registry.latest(job_type)  # UnknownJobType names the member job type
    complete = _check_callback(pub, "on_complete", on_complete)
    success = _check_callback(pub, "on_success", on_success)
    recs: list[Rec] = []
    for i, payload in enumerate(payloads):
        if not isinstance(payload, Mapping):
            raise InvalidJob(f"batch: member {i}: the payload must be a mapping, got "
                             f"{type(payload).__name__}")
        mid = br.member_id(batch_id, i)
        try:
            topic, _, value, hdrs = pub.build(job_type, payload, key=key, job_id=mid,
                                              parent_job_id=parent_job_id,
                                              traceparent=traceparent)
        except InvalidJob as e:
            raise InvalidJob(f"batch: member {i}: {e}") from None
        except ValueError as e:  # the payload does not fit the schema
            raise InvalidJob(f"batch: member {i} ({job_type}): {e}") from None
        hdrs.append((wire.BATCH, batch_id.encode()))
        rkey = (key or mid).encode()
        size = len(rkey) + len(value) + sum(len(k) + len(v) for k, v in hdrs)
        limit = pub.max_record_bytes(topic) - 512
        if size > limit:
            raise InvalidJob(f"batch: member {i}: the record is {size} bytes; {topic} accepts "
                             f"at most {limit}")
        recs.append(Rec(mid, job_type, topic, rkey, value, hdrs, None))
    topics = {which: main_topic(cb[0], pub.settings.jobs.get(cb[0]))
              for which, cb in (("complete", complete), ("success", success)) if cb is not None}
    batch = br.Batch(id=batch_id, job_type=job_type, total=len(recs), on_complete=complete,
                     on_success=success, key=key, parent=parent, parent_job_id=parent_job_id,
                     created_ms=now_ms, topics=topics)
    head = Rec(batch_id, "", BATCHES_TOPIC, batch_id.encode(), batch.encode(), [],
               br.partition_of(batch_id, BATCHES_PARTITIONS))
    # The batch record first: an owner reading the partition knows the batch before any
    # member's outcome (they come later, in the same partition).
    return batch, [head, *recs]


def _txn_producer(pub: Publisher) -> Producer:
    p: Producer | None = getattr(pub, "_batch_producer", None)
    if p is None:
        p = Producer(client_config(pub.settings.kafka, **{
            "transactional.id": f"jobstream-batch-{pub.producer_name}-{uuid.uuid4().hex[:8]}",
            "transaction.timeout.ms": 30_000,
            "linger.ms": 5,
            "partitioner": "murmur2_random",  # a member's key picks its partition as publish
        }))
        try:
            p.init_transactions(30)
        except KafkaException as e:
            raise PublishError(f"batch: cannot start a transaction: {e.args[0]}") from None
        pub._batch_producer = p  # type: ignore[attr-defined]
    return p


def publish_batch(pub: Publisher, job_type: str, payloads: Sequence[Mapping[str, Any]], *,
                  on_complete: Any, on_success: Any = None, key: str | None = None,
                  timeout: float = 60.0) -> str:
    """Validate and publish the batch in one transaction; its id once it committed."""
    import time

    batch_id = new_batch_id()
    _, recs = build_batch(pub, job_type, payloads, batch_id=batch_id, on_complete=on_complete,
                          on_success=on_success, key=key, now_ms=int(time.time() * 1000))
    p = _txn_producer(pub)
    try:
        p.begin_transaction()
        for r in recs:
            kwargs: dict[str, Any] = {"headers": r.headers}
            if r.partition is not None:
                kwargs["partition"] = r.partition
            while True:
                try:
                    p.produce(r.topic, r.value, r.key, **kwargs)
                    break
                except BufferError:
                    p.poll(0.1)
        p.commit_transaction(timeout)
    except KafkaException as e:
        err = e.args[0]
        pub._batch_producer = None  # type: ignore[attr-defined]
        try:
            if not err.fatal():
                p.abort_transaction(10)
        except KafkaException:
            pass
        raise PublishError(f"batch {batch_id}: not published (nothing of it is visible): "
                           f"{err}") from None
    return batch_id
