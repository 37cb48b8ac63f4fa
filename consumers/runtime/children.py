"""Child jobs a handler enqueues (`ctx.enqueue`, docs/workflows.md).

The handler runs on an executor thread; the producer belongs to the poll thread. So a child is
validated and Avro-encoded on the handler thread (a bad payload raises there, like `publish`)
and kept on the attempt (`Children`); the poll thread produces the attempt's children in the
parent's commit interval when it delivers the parent's success (consumers/runtime/deliver.py):

- transactional mode: in the parent's transaction, visible only if the parent's completion
  commits;
- at least once: produced before the parent's completion, which is written only once every
  child is acknowledged (so before the parent's offset can commit); a redo may publish a child
  again, with the same id, and the child's ledger drops the repeat.

A failed attempt's children are never produced: they go with the attempt. A child's id is
derived from the parent's id and the child's `name` (or the index of the call), so a re-run of
the parent enqueues the same ids.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobstream.config.topics import base_of, scheduled_topic
from jobstream.producers import chains, delayed, lanes
from jobstream.producers.chains import Chain
from jobstream.producers.errors import InvalidJob, check_id
from jobstream.schemas import wire
from jobstream.schemas.partitioner import partition_for

if TYPE_CHECKING:
    from jobstream.producers.publisher import Publisher

# The namespace of derived child ids: uuid5(CHILD_NS, "<parent id>/<name or #index>").
CHILD_NS = uuid.UUID("8a3c1f0e-6b2d-5e7a-9c41-2f5d0b7e9a13")
_NS = CHILD_NS.bytes
MAX_CHILDREN = 10_000  # per attempt: they are all in one interval


def child_id(parent_job_id: str, name: str | None, index: int) -> str:
    """The child's job id: the same for the same parent and name (or index), on every run."""
    label = f"n:{name}" if name is not None else f"#{index}"
    # uuid.uuid5(CHILD_NS, ...).hex, without building UUID objects (a third of the call)
    b = bytearray(hashlib.sha1(_NS + f"{parent_job_id}/{label}".encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    return b.hex()


@dataclass(frozen=True)
class ChildRecord:
    job_id: str
    job_type: str
    topic: str
    key: bytes
    value: bytes
    headers: wire.HeaderList
    partition: int | None  # set for a delayed child (its T.scheduled partition)
    due_ms: int | None
    kind: str = "job"  # job (in the parent's history) | member (of a batch) | batch (its records)


class Children:
    """One attempt's enqueued children. `add` runs on the handler's thread, `take` on the poll
    thread once the attempt succeeded."""

    def __init__(self, parent_job_id: str, parent_headers: Mapping[str, str],
                 publisher: Callable[[], Publisher]) -> None:
        self.parent_job_id = parent_job_id
        self.traceparent = parent_headers.get(wire.TRACEPARENT) or None
        self.member_of = parent_headers.get(wire.BATCH) or None  # the parent is a batch member
        self.nested = False  # this attempt opened a batch as a member of one (ctx.batch)
        self.publisher = publisher  # the interval's current one (renewed on fencing)
        self._lock = threading.Lock()
        self._records: list[ChildRecord] = []
        self._names: set[str] = set()
        self._calls = 0
        self._closed = False  # taken: the attempt ended

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidJob("enqueue after the job's attempt ended: call ctx.enqueue from "
                             "the handler, before it returns")

    def add(self, job_type: str, payload: Mapping[str, Any], key: str | None = None,
            name: str | None = None, delay: str | float | None = None,
            run_at: datetime | None = None, headers: Mapping[str, str] | None = None,
            priority: str | None = None) -> str:
        """Validate and encode one child; its id. Raises InvalidJob (or the payload's
        PayloadError, UnknownJobType) naming the problem."""
        _check_name("enqueue", name)
        with self._lock:
            self._check_open()
            index = self._calls
            if name is not None and name in self._names:
                raise InvalidJob(f"enqueue: name {name!r} was already used by this job: each "
                                 "child needs its own name (it is what its id is made from)")
            if len(self._records) >= MAX_CHILDREN:
                raise InvalidJob(f"enqueue: at most {MAX_CHILDREN} children per attempt")
            self._calls += 1
        jid = child_id(self.parent_job_id, name, index)
        rec = build_child(self.publisher(), job_type, payload, jid, key=key, delay=delay,
                          run_at=run_at, parent_job_id=self.parent_job_id,
                          traceparent=self.traceparent, headers=headers, priority=priority)
        with self._lock:
            self._check_open()
            if name is not None:
                self._names.add(name)
            self._records.append(rec)
        return jid

    def add_chain(self, ch: Chain, key: str | None = None, name: str | None = None) -> str:
        """The first step of a chain, as a child; the other steps follow it."""
        pub = self.publisher()
        chains.check(ch, pub.registry)
        _check_name("chain", name)
        with self._lock:
            self._check_open()
            index = self._calls
            if name is not None and name in self._names:
                raise InvalidJob(f"chain: name {name!r} was already used by this job")
            self._calls += 1
        jid = child_id(self.parent_job_id, name, index)
        first = ch.steps[0]
        rec = build_child(pub, first.job_type, first.payload, jid, key=first.key or key,
                          delay=None, run_at=None, parent_job_id=self.parent_job_id,
                          traceparent=self.traceparent,
                          extra=chains.first_headers(jid, _keyed(ch, key)))
        with self._lock:
            self._check_open()
            if name is not None:
                self._names.add(name)
            self._records.append(rec)
        return jid

    def add_batch(self, job_type: str, payloads: Any, *, on_complete: Any,
                  on_success: Any = None, key: str | None = None,
                  name: str | None = None) -> str:
        """A batch (producers/batches.py) as children: its record and members, in this job's
        interval. Opened by a batch member, it is nested: the member is final when it closes."""
        import time

        from jobstream.producers.batches import build_batch

        _check_name("batch", name)
        with self._lock:
            self._check_open()
            index = self._calls
            if name is not None and name in self._names:
                raise InvalidJob(f"batch: name {name!r} was already used by this job")
            self._calls += 1
        bid = child_id(self.parent_job_id, name, index)
        parent = (self.member_of, self.parent_job_id) if self.member_of else None
        _, recs = build_batch(self.publisher(), job_type, payloads, batch_id=bid,
                              on_complete=on_complete, on_success=on_success, key=key,
                              parent_job_id=self.parent_job_id, traceparent=self.traceparent,
                              parent=parent, now_ms=int(time.time() * 1000))
        out = [ChildRecord(r.job_id, r.job_type, r.topic, r.key, r.value, r.headers,
                           r.partition, None, kind="member" if r.job_type else "batch")
               for r in recs]
        with self._lock:
            self._check_open()
            if name is not None:
                self._names.add(name)
            if parent is not None:
                self.nested = True
            self._records += out
        return bid

    def take(self) -> list[ChildRecord]:
        with self._lock:
            out, self._records = self._records, []
            self._closed = True
        return out

    def append(self, rec: ChildRecord) -> None:
        """A child the poll thread adds itself (a chain's next step)."""
        with self._lock:
            self._records.append(rec)


def build_child(pub: Publisher, job_type: str, payload: Mapping[str, Any], job_id: str, *,
                key: str | None, delay: str | float | None, run_at: datetime | None,
                parent_job_id: str, traceparent: str | None,
                headers: Mapping[str, str] | None = None,
                extra: wire.HeaderList | None = None,
                priority: str | None = None) -> ChildRecord:
    """The child's record, as `Publisher.publish_async` would send it (a delayed one to
    T.scheduled, in the partition its key picks on T)."""
    if not isinstance(payload, Mapping):
        raise InvalidJob(f"enqueue: payload must be a mapping, got {type(payload).__name__}")
    due = None
    if delay is not None or run_at is not None:
        due = delayed.due_ms(delay, run_at, pub.settings.job(job_type).max_delay_s)
    topic, jid, value, hdrs = pub.build(job_type, payload, key=key, job_id=job_id,
                                        parent_job_id=parent_job_id, headers=headers,
                                        traceparent=traceparent)
    if extra:
        hdrs += extra
    if priority is not None:  # its lane's topic (a delayed one: T.scheduled, as for publish)
        topic = lanes.route(job_type, pub.settings.job(job_type), priority, topic, hdrs)
    record_key = (key or jid).encode("utf-8")
    partition = None
    if due is not None:
        partition = partition_for(record_key, pub._partition_count(topic))
        hdrs.append((wire.RUN_AT, str(due).encode()))
        if key is not None:
            hdrs.append((wire.KEY, record_key))
        topic, record_key = scheduled_topic(base_of(topic)), jid.encode("utf-8")
    size = len(record_key) + len(value) + sum([len(k) + len(v) for k, v in hdrs])
    limit = pub.max_record_bytes(topic) - 512
    if size > limit:
        raise InvalidJob(f"enqueue: the {job_type} record is {size} bytes; {topic} accepts at "
                         f"most {limit}")
    return ChildRecord(jid, job_type, topic, record_key, value, hdrs, partition, due)


def _check_name(what: str, name: str | None) -> None:
    if name is None:
        return
    check_id(f"{what}: name", name)
    if name.startswith("~"):  # "~chain": a chain's next step
        raise InvalidJob(f"{what}: name {name!r}: names starting with ~ are reserved")


def _keyed(ch: Chain, key: str | None) -> Chain:
    """The chain with `key` on every step that has none of its own."""
    if key is None:
        return ch
    return Chain(tuple(chains.Step(s.job_type, s.payload, s.key or key) for s in ch.steps))


def next_step(pub: Publisher, job_id: str, headers: Mapping[str, str],
              result: Any) -> tuple[chains.Position, ChildRecord] | None:
    """The chain step after this one (job_id, with these headers) as its child, its payload
    built from `result`; None when the job is no chain step or the last one. Raises InvalidJob
    naming the problem when the result does not make a valid next payload."""
    pos = chains.position(headers)
    if pos is None or not pos.rest:
        return None
    nxt = pos.rest[0]
    payload = chains.next_payload(nxt, result, chains.schema_fields(pub.registry, nxt.job_type))
    value = chains.header(pos.chain_id, pos.types, pos.step + 1, tuple(pos.rest[1:]))
    try:
        rec = build_child(pub, nxt.job_type, payload, child_id(job_id, "~chain", 0),
                          key=nxt.key, delay=None, run_at=None, parent_job_id=job_id,
                          traceparent=headers.get(wire.TRACEPARENT) or None,
                          extra=[(chains.CHAIN, value)])
    except InvalidJob:
        raise
    except ValueError as e:  # the payload does not fit the next step's schema
        raise InvalidJob(f"chain step {pos.step + 1} of {pos.total} ({nxt.job_type}): {e}"
                         ) from None
    return pos, rec


def children_of(pub: Publisher, job: Any, result: Any) -> list[ChildRecord]:
    """What a succeeded attempt enqueues: its children, then its chain's next step."""
    kids = job.children.take() if job.children is not None else []
    job.children = None
    try:
        step = next_step(pub, job.job_id, job.headers, result)
    except KeyError as e:  # UnknownJobType
        raise InvalidJob(f"chain: {e}") from None
    if step is not None:
        kids.append(step[1])
    return kids


def send_children(interval: Any, records: list[ChildRecord], gate: Countdown) -> None:
    """Produce the children in the interval; each acknowledgement counts down the gate, a
    failed write breaks the interval (the parent is redone, with the same child ids)."""

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            interval.break_(f"could not write a child job: {err.str()}")
        else:
            gate.done()

    for rec in records:
        interval.publisher.send(rec.topic, rec.key, rec.value, rec.headers,
                                partition=rec.partition, on_delivery=on_delivery, serve=False)


class Countdown:
    """Runs `then` once `n` acknowledgements arrived (at least once, a parent's outcome waits
    for its children's)."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.then: Callable[[], None] | None = None

    def done(self) -> None:
        self.left -= 1
        if self.left == 0 and self.then is not None:
            then, self.then = self.then, None
            then()
