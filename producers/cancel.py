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
   `ops:<cancel id>:<job id>`), so `jobs show` prints who cancelled it, and one audit record
   for the whole call.
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

# Audit appends are serialised by one transactional id (audit_chain.py): threads of one
# process cancelling at once would fence each other; they take turns here instead.
_AUDIT_LOCK = threading.Lock()
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


@dataclass
class _Where:
    state: str
    attempts: int
    scheduled: bool  # waits in T.scheduled
    partition: int
    key: str | None


def _state(settings: Settings, topics: JobTopics, job_type: str, job_id: str,
           key: str | None, p: int, timeout: float) -> _Where:
    """Where the job stands, and the partition and key its records are under (without a key,
    the lookup searches every partition: a job published with a key is found there). T.scheduled
    and the tiers are read only when history, ledger and T's tail know nothing of the job (a
    delayed job not yet due, or a job type without history)."""
    from jobstream.producers.status import status

    st = status(settings, job_type, job_id, key, timeout)
    if key is None and st.partition is not None:
        p, key = st.partition, st.key
    if st.state != "unknown":
        return _Where(st.state, st.attempts, False, p, key)
    reader = _Reader(settings, timeout)
    try:
        if reader.scheduled(topics.scheduled, p, job_id):
            return _Where("scheduled", st.attempts, True, p, key)
        if reader.waiting(topics.retries, p, job_id):
            return _Where("retrying", st.attempts, False, p, key)
    finally:
        reader.close()
    return _Where("unknown", st.attempts, False, p, key)


def cancel(pub: Any, job_type: str, job_id: str, key: str | None = None,
           timeout: float = 30.0, confirm_timeout: float = 10.0) -> CancelResult:
    """Cancel the job unless it is final or unknown (see the module's docstring)."""
    return cancel_many(pub, job_type, [(job_id, key)], timeout, confirm_timeout)[0]


def cancel_many(pub: Any, job_type: str, jobs: list[tuple[str, str | None]],
                timeout: float = 30.0, confirm_timeout: float = 10.0) -> list[CancelResult]:
    """Cancel each (job id, key) unless it is final or unknown: looked up side by side, the
    entries written together, one fence wait per partition and one audit record for them all
    (the audit topic takes one writer at a time: a record per job made 100 cancels take a
    minute)."""
    from concurrent.futures import ThreadPoolExecutor

    from jobstream.producers.delayed import cancel as tombstone
    from jobstream.producers.errors import check_id, check_key
    from jobstream.schemas.partitioner import partition_for

    for job_id, key in jobs:
        check_id("job_id", job_id)
        if key is not None:
            check_key(key)
    if not jobs:
        return []
    settings: Settings = pub.settings
    topics = job_topics(job_type, settings.job(job_type))
    n = pub._partition_count(topics.main)
    parts = [partition_for((key or job_id).encode("utf-8"), n) for job_id, key in jobs]
    with ThreadPoolExecutor(min(16, len(jobs)), thread_name_prefix="js-cancel") as pool:
        states = list(pool.map(lambda i: _state(settings, topics, job_type, jobs[i][0],
                                                jobs[i][1], parts[i], timeout), range(len(jobs))))
    jobs = [(job_id, w.key) for (job_id, _), w in zip(jobs, states, strict=True)]
    parts = [w.partition for w in states]
    results: list[CancelResult | None] = [None] * len(jobs)
    todo = []
    for i, w in enumerate(states):
        state = w.state
        if state in FINAL:
            results[i] = CancelResult(job_type, jobs[i][0], "already_final", state, True)
        elif state == "unknown":
            results[i] = CancelResult(job_type, jobs[i][0], "unknown", state, True)
        else:
            todo.append(i)
    if not todo:
        return [r for r in results if r is not None]
    by, now, cancel_id = _who(), int(time.time() * 1000), uuid.uuid4().hex
    keeps_history = settings.job(job_type).history
    rows = []
    for i in todo:
        job_id, key = jobs[i]
        state, attempts = states[i].state, states[i].attempts
        rows.append((topics.ledger, parts[i], cancel_key(job_id).encode(),
                     encode_cancel(now, attempts, by)))
        if not keeps_history:
            continue
        rec = history.event("cancelled", job_id=job_id, job_type=job_type, at=now, user=by,
                            attempt=attempts or None, reason=f"jobs cancel (was {state})")
        # A chain stream of its own per cancel and job: operators cancelling at once never
        # fork one chain (schemas/chain.py).
        value, _ = history.encode(rec, GENESIS,
                                  f"{history.OPS_STREAM}:{cancel_id}:{job_id}")
        rows.append((topics.history, parts[i], (key or job_id).encode(), value))
    sent = _send_all(pub, rows, timeout)
    offsets = sent[::2] if keeps_history else sent
    for i in todo:
        if states[i].scheduled:
            tombstone(pub, job_type, jobs[i][0], jobs[i][1], timeout, audit=False)
    last: dict[int, int] = {}
    for i, off in zip(todo, offsets, strict=True):
        last[parts[i]] = max(last.get(parts[i], -1), off)
    deadline = time.monotonic() + confirm_timeout
    confirmed = {p: wait_fence(settings, topics.consumed, p, off,
                               max(0.0, deadline - time.monotonic()))
                 for p, off in sorted(last.items())}
    for i, off in zip(todo, offsets, strict=True):
        results[i] = CancelResult(job_type, jobs[i][0], "cancelled", states[i].state,
                                  confirmed[parts[i]], f"{topics.ledger}[{parts[i]}]@{off}")
    done = [r for r in results if r is not None]
    _audit(settings, job_type, [(jobs[i][0], jobs[i][1], results[i]) for i in todo], cancel_id)
    return done


def _send_all(pub: Any, rows: list[tuple[str, int, bytes, bytes]], timeout: float
              ) -> list[int]:
    """Produce these (topic, partition, key, value) records and wait for every
    acknowledgement; their offsets, in order."""
    got: list[tuple[Any, int] | None] = [None] * len(rows)
    left = [len(rows)]

    def make_cb(i: int) -> Any:
        def on_delivery(err: Any, msg: Any) -> None:
            got[i] = (err, msg.offset() if msg is not None else -1)
            left[0] -= 1
        return on_delivery

    for i, (topic, p, key, value) in enumerate(rows):
        pub.send(topic, key, value, [], partition=p, on_delivery=make_cb(i), check_size=False,
                 serve=False)
    deadline = time.monotonic() + timeout
    while left[0]:
        if time.monotonic() > deadline:
            raise PublishError(f"cancel: {left[0]} of {len(rows)} records not acknowledged "
                               f"within {timeout:g}s")
        pub.producer.poll(0.05)
    out = []
    for (topic, _, key, _), g in zip(rows, got, strict=True):
        assert g is not None
        if g[0] is not None:
            raise PublishError(f"cancel of {key.decode(errors='replace')}: {topic}: "
                               f"{g[0].str()}")
        out.append(int(g[1]))
    return out


def _owned(settings: Settings, tps: list[TopicPartition], timeout: float
           ) -> list[TopicPartition]:
    """The ones of `tps` a live member of the workers' group owns now; all of them when the
    group cannot be described. One nobody owns needs no fence: whoever takes it restores the
    ledger, cancel included, before it starts a job of it."""
    from confluent_kafka.admin import AdminClient

    group = settings.worker.group_id
    try:
        admin = AdminClient(client_config(settings.kafka))
        desc = admin.describe_consumer_groups([group], request_timeout=timeout)[group].result(
            timeout=timeout)
        owned = {(tp.topic, tp.partition) for m in desc.members
                 for tp in (m.assignment.topic_partitions if m.assignment else [])}
    except Exception:
        return tps
    return [tp for tp in tps if (tp.topic, tp.partition) in owned]


def wait_fence(settings: Settings, sources: tuple[str, ...], p: int, offset: int,
               timeout: float) -> bool:
    """Whether every worker owning partition p of these topics has read the ledger past
    `offset` (ledger_tail.py) within `timeout`."""
    from jobstream.consumers.runtime.ledger_tail import fence_group

    tps = _owned(settings, [TopicPartition(t, p) for t in sources], min(timeout, 5.0) or 5.0)
    if not tps:
        return True
    consumer = Consumer(client_config(settings.kafka, **{
        "group.id": fence_group(settings.worker.group_id), "enable.auto.commit": False}))
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


def _audit(settings: Settings, job_type: str,
           done: list[tuple[str, str | None, CancelResult | None]], cancel_id: str) -> None:
    from jobstream.consumers.ops.audit import who, write_audit

    record: dict[str, Any] = {
        "id": cancel_id,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "user": who(),
        "host": socket.gethostname(),
        "command": "jobs cancel",
        "target": job_type,
        "status": "completed",
    }
    if len(done) == 1:
        job_id, key, res = done[0]
        assert res is not None
        record.update(job_id=job_id, key=key, previous_state=res.state,
                      destination=res.ledger, confirmed=res.confirmed)
    else:
        record["jobs"] = [{"job_id": j, "key": k, "previous_state": r.state,
                           "destination": r.ledger, "confirmed": r.confirmed}
                          for j, k, r in done if r is not None]
    with _AUDIT_LOCK:
        write_audit(settings, record)


def describe(result: CancelResult) -> str:
    return json.dumps({"job_type": result.job_type, "job_id": result.job_id,
                       "outcome": result.outcome, "state": result.state,
                       "confirmed": result.confirmed, "ledger": result.ledger})
