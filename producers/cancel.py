"""Cancelling a job that has not run to its end: `Publisher.cancel` and `jobstream jobs cancel`.

What it does, in order:
1. Looks the job up (producers/status.py, plus T.scheduled and the retry tiers' unconsumed
   tails for a job whose history does not say where it is). A job already succeeded,
   dead-lettered or cancelled is left as it is (`already_final`); one found nowhere is
   `unknown`. Neither writes anything.
2. Writes a `cancelled` entry to T.ledger, partition p (the one the job's key picks, where its
   own entries are), under `!cancel/<job id>`: a key of its own, so the entry never hides the
   `succeeded` entry of a run that raced the cancel. A delayed job still in T.scheduled also
   gets its tombstone there, as before. Then a `cancelled` record in T.history (stream
   `ops:<cancel id>`), so `jobs show` prints who cancelled it, and the audit record.
3. Waits for the fence (consumers/runtime/ledger_tail.py): each worker owning partition p of T
   or of a retry tier commits how far it has read the ledger. Once every one of them is past
   the cancel's offset, no attempt of the job starts any more (`confirmed`). A job already
   running is not stopped: its current attempt ends as it ends (and if it succeeds, the job
   is `succeeded`); no later attempt runs.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from confluent_kafka import Consumer, KafkaError, TopicPartition

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings
from jobstream.config.topics import JobTopics, job_topics
from jobstream.producers.errors import PublishError
from jobstream.schemas import history, wire
from jobstream.schemas.chain import GENESIS
from jobstream.schemas.ledger_entry import cancel_key, encode_cancel
from jobstream.schemas.lifecycle import FINAL

_SCAN: Final = 200_000  # most records read of each tail (T.scheduled, a tier) to find the job
CancelOutcome = Literal["cancelled", "already_final", "unknown"]


@dataclass(frozen=True)
class CancelResult:
    """What a cancel did. `outcome`: cancelled (the entry is written), already_final (the job
    had succeeded, was dead-lettered or cancelled before: nothing changed) or unknown (no record
    of the job: nothing written). `state`: where the job stood before. `confirmed`: every worker
    owning the job's partitions has read the cancel (False: none answered in time; a worker that
    takes the job later still skips it)."""

    job_type: str
    job_id: str
    outcome: CancelOutcome
    state: str
    confirmed: bool = False
    ledger: str | None = None  # where the cancel entry went: topic[partition]@offset

    @property
    def cancelled(self) -> bool:
        return self.outcome == "cancelled"

    @property
    def message(self) -> str:
        head = f"{self.job_type} {self.job_id}"
        if self.outcome == "unknown":
            return (f"{head}: no record of this job (a wrong id or key, or older than the "
                    "history retention and the ledger TTL): nothing cancelled")
        if self.outcome == "already_final":
            return f"{head}: already {self.state}: nothing changed"
        note = {"running": "; its current attempt is not stopped, no further attempt runs"
                }.get(self.state, "")
        if self.confirmed:
            return f"{head}: cancelled (was {self.state}){note}"
        return (f"{head}: cancelled (was {self.state}){note}; no worker confirmed it yet (none "
                "running?): a worker that takes the job later skips it")


def _who() -> str:
    from jobstream.consumers.ops.audit import who

    return f"{who()}@{socket.gethostname()}"


class _Reader:
    """Finds a job id in the tails of some partitions (read_committed, assign only)."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self.settings, self.timeout = settings, timeout
        self.consumer = Consumer(client_config(settings.kafka, **{
            "group.id": settings.worker.group_id,  # committed() only: never joins
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }))

    def close(self) -> None:
        self.consumer.close()

    def scheduled(self, topic: str, p: int, job_id: str) -> bool:
        """Whether T.scheduled (keyed by job id, compacted) holds the job, not tombstoned."""
        found: list[bool] = []

        def take(msg: Any) -> None:
            if msg.key() == job_id.encode():
                found.append(msg.value() is not None)

        self._scan(TopicPartition(topic, p), None, take)
        return bool(found) and found[-1]

    def waiting(self, topics: tuple[str, ...], p: int, job_id: str) -> bool:
        """Whether one of these topics holds the job past the workers' committed offset."""
        found: list[bool] = []

        def take(msg: Any) -> None:
            if wire.decode_headers(msg.headers()).get(wire.JOB_ID) == job_id:
                found.append(True)

        for t in topics:
            tp = TopicPartition(t, p)
            committed = self.consumer.committed([tp], timeout=self.timeout)[0].offset
            self._scan(tp, committed if committed >= 0 else None, take)
            if found:
                return True
        return False

    def _scan(self, tp: TopicPartition, start: int | None, take: Any) -> None:
        low, high = self.consumer.get_watermark_offsets(tp, timeout=self.timeout)
        begin = max(low, high - _SCAN, start if start is not None else low)
        if begin >= high:
            return
        self.consumer.assign([TopicPartition(tp.topic, tp.partition, begin)])
        deadline = time.monotonic() + self.timeout
        try:
            while time.monotonic() < deadline:
                msg = self.consumer.poll(0.2)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return
                    continue
                take(msg)
                if (msg.offset() or 0) + 1 >= high:
                    return
        finally:
            self.consumer.unassign()


def _state(settings: Settings, topics: JobTopics, job_type: str, job_id: str,
           key: str | None, p: int, timeout: float) -> tuple[str, int, bool]:
    """(state, attempts, waits in T.scheduled)."""
    from jobstream.producers.status import status

    st = status(settings, job_type, job_id, key, timeout)
    reader = _Reader(settings, timeout)
    try:
        scheduled = reader.scheduled(topics.scheduled, p, job_id)
        state = st.state
        if state == "unknown":
            if scheduled:
                state = "scheduled"
            elif reader.waiting(topics.retries, p, job_id):
                state = "retrying"
    finally:
        reader.close()
    return state, st.attempts, scheduled


def cancel(pub: Any, job_type: str, job_id: str, key: str | None = None,
           timeout: float = 30.0, confirm_timeout: float = 10.0) -> CancelResult:
    """Cancel the job unless it is final or unknown (see the module's docstring)."""
    from jobstream.producers.delayed import cancel as tombstone
    from jobstream.producers.errors import check_id, check_key
    from jobstream.schemas.partitioner import partition_for

    check_id("job_id", job_id)
    if key is not None:
        check_key(key)
    settings: Settings = pub.settings
    topics = job_topics(job_type, settings.job(job_type))
    p = partition_for((key or job_id).encode("utf-8"), pub._partition_count(topics.main))
    state, attempts, scheduled = _state(settings, topics, job_type, job_id, key, p, timeout)
    if state in FINAL:
        return CancelResult(job_type, job_id, "already_final", state, confirmed=True)
    if state == "unknown":
        return CancelResult(job_type, job_id, "unknown", state, confirmed=True)
    by, now = _who(), int(time.time() * 1000)
    offset = _send(pub, topics.ledger, p, cancel_key(job_id).encode(),
                   encode_cancel(now, attempts, by), timeout, job_id)
    if scheduled:
        tombstone(pub, job_type, job_id, key, timeout, audit=False)
    cancel_id = uuid.uuid4().hex
    rec = history.event("cancelled", job_id=job_id, job_type=job_type, at=now, user=by,
                        attempt=attempts or None, reason=f"jobs cancel (was {state})")
    value, _ = history.encode(rec, GENESIS, f"{history.OPS_STREAM}:{cancel_id}")
    _send(pub, topics.history, p, (key or job_id).encode(), value, timeout, job_id)
    where = f"{topics.ledger}[{p}]@{offset}"
    confirmed = wait_fence(settings, topics.consumed, p, offset, confirm_timeout)
    _audit(settings, job_type, job_id, key, state, where, confirmed, cancel_id)
    return CancelResult(job_type, job_id, "cancelled", state, confirmed, where)


def _send(pub: Any, topic: str, p: int, key: bytes, value: bytes, timeout: float,
          job_id: str) -> int:
    """Produce one record and wait for its acknowledgement; its offset."""
    done = threading.Event()
    got: list[Any] = []

    def on_delivery(err: Any, msg: Any) -> None:
        got.append((err, msg.offset() if msg is not None else None))
        done.set()

    pub.send(topic, key, value, [], partition=p, on_delivery=on_delivery, check_size=False)
    deadline = time.monotonic() + timeout
    while not done.is_set():
        if time.monotonic() > deadline:
            raise PublishError(f"cancel of job {job_id}: no acknowledgement from {topic} within "
                               f"{timeout:g}s")
        pub.producer.poll(0.05)
    err, offset = got[0]
    if err is not None:
        raise PublishError(f"cancel of job {job_id}: {topic}: {err.str()}")
    return int(offset)


def wait_fence(settings: Settings, sources: tuple[str, ...], p: int, offset: int,
               timeout: float) -> bool:
    """Whether every worker owning partition p of these topics has read the ledger past
    `offset` within `timeout` (ledger_tail.py)."""
    from jobstream.consumers.runtime.ledger_tail import fence_group

    consumer = Consumer(client_config(settings.kafka, **{
        "group.id": fence_group(settings.worker.group_id), "enable.auto.commit": False}))
    tps = [TopicPartition(t, p) for t in sources]
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                got = consumer.committed(tps, timeout=max(1.0, timeout))
                if all(tp.offset > offset for tp in got):
                    return True
            except Exception:  # the coordinator still loading: ask again
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
    finally:
        consumer.close()


def _audit(settings: Settings, job_type: str, job_id: str, key: str | None, state: str,
           where: str, confirmed: bool, cancel_id: str) -> None:
    from jobstream.consumers.ops.audit import who, write_audit

    write_audit(settings, {
        "id": cancel_id,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "user": who(),
        "host": socket.gethostname(),
        "command": "jobs cancel",
        "target": job_type,
        "job_id": job_id,
        "key": key,
        "previous_state": state,
        "destination": where,
        "confirmed": confirmed,
        "status": "completed",
    })


def describe(result: CancelResult) -> str:
    return json.dumps({"job_type": result.job_type, "job_id": result.job_id,
                       "outcome": result.outcome, "state": result.state,
                       "confirmed": result.confirmed, "ledger": result.ledger})
