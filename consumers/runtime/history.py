"""Writing T.history: one record per attempt's outcome (and per progress update), produced in the
worker's commit interval: in transactional mode it commits or aborts with the offsets; at least
once it is acknowledged before the offsets are committed.

Each source partition (topic, p) the worker owns is one chain stream, `<topic>:<p>`, written
only by that partition's owner. Its head (the last record's hash) is kept per interval: a
record extends the interval's head, a commit makes it the committed head, an abort drops it.
At each commit the heads the interval moved go to the ledger (`!history-head/<topic>/<p>`) in
the same transaction, so the next owner of the partition, whose ledger restore reads them,
continues the chain where it ended.

Events are gathered per stream and written at the end of a pass of the loop once the oldest
has waited LINGER_S (`flush`), and before every commit: a stream with one event gets one record
as before, a stream with several one `batch` record (schemas/history.py). Under load that is
one produce, one delivery report and one seal for many jobs: a record per job cost a no-op
worker a quarter of its speed. The linger does the same at a steady, moderate rate, where a
pass of the loop sees one job: a produce per pass was a tenth of the worker's CPU there.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from jobstream.config.settings import JobTypeSettings
from jobstream.config.topics import JobTopics
from jobstream.consumers.errors import Failure
from jobstream.consumers.runtime.commit import CommitAborted, ProducerFenced
from jobstream.consumers.runtime.heads import encode_head, head_key
from jobstream.consumers.runtime.interval import Interval, State
from jobstream.consumers.runtime.ledger import Ledger
from jobstream.consumers.runtime.parts import PartitionState
from jobstream.consumers.runtime.types import Job
from jobstream.schemas import history, wire
from jobstream.schemas.chain import GENESIS


def chain_note(headers: dict[str, str]) -> dict[str, Any] | None:
    """A chain step's place, for its history records."""
    from jobstream.producers.chains import position

    pos = position(headers)
    if pos is None:
        return None
    return {"chain_id": pos.chain_id, "step": pos.step, "of": pos.total, "types": pos.types}


def result_digest(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


@dataclass
class _Stream:
    gen: int
    head: str
    ledger_tp: tuple[str, int]


# A batch record stays well under the producer's and the topic's 1 MB record limit.
BATCH_MAX_BYTES = 256 * 1024
BATCH_MAX_EVENTS = 500
_EVENT_BYTES = 700  # about what one event without a result takes
LINGER_S = 0.005  # (the producer's linger.ms is 2 ms: a batch record is seen 3 ms later at most)


@dataclass(slots=True)
class _Open:
    """The events of one stream not written yet, in order."""

    ps: PartitionState
    source: tuple[str, int]  # the stream's source partition
    topic: str  # its T.history
    key: bytes
    events: list[dict[str, Any]]
    plain: bool
    size: int


class HistoryWriter:
    def __init__(self, topics: dict[str, JobTopics], cfg: dict[str, JobTypeSettings],
                 worker_id: str, interval: Interval, ledger: Ledger) -> None:
        self.topics, self.cfg, self.worker_id = topics, cfg, worker_id
        self.interval = interval
        self.ledger = ledger
        self._committed: dict[str, _Stream] = {}
        self._pending: dict[str, _Stream] = {}
        self.written = 0
        self._open: dict[str, _Open] = {}
        self._since = 0.0  # monotonic time of the oldest open event
        self._urgent = False  # an open event is not plain (a result, progress...): no linger
        self._policies: dict[str, history.Policy] = {}  # per job type's settings
        interval.on_end.append(self._ended)

    def _ended(self, how: State) -> None:
        if how is State.COMMITTED:
            self._committed.update(self._pending)
        self._pending.clear()
        self._open.clear()  # (flushed before a commit; an abort drops them with the rest)

    # -- chain heads ---------------------------------------------------------------------

    def _head(self, stream: str, gen: int, ledger_tp: tuple[str, int], topic: str,
              partition: int) -> str:
        for book in (self._pending, self._committed):
            s = book.get(stream)
            if s is not None and s.gen == gen:
                return s.head
        return self.ledger.head(ledger_tp, head_key(topic, partition)) or GENESIS

    def write_heads(self) -> None:
        """The events not written yet, then the heads this interval moved, into the ledger with
        it: sent before the commit."""
        self.flush()
        interval = self.interval
        for stream, st in self._pending.items():
            if interval.broken:
                return
            topic, _, p = stream.rpartition(":")
            try:
                interval.committer.before_produce()
                interval.publisher.send(st.ledger_tp[0], head_key(topic, int(p)).encode(),
                                        encode_head(st.head), [], partition=st.ledger_tp[1],
                                        on_delivery=self._head_delivered, serve=False)
            except (CommitAborted, ProducerFenced) as e:
                interval.break_(f"cannot write a history chain head: {e}")
            except (KafkaException, SystemError) as raised:
                interval.producer_failed(raised, "cannot write a history chain head")

    def _head_delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.interval.break_(f"could not write a history chain head: {err.str()}")

    # -- records -------------------------------------------------------------------------

    def attempt(self, ps: PartitionState, job: Job, outcome: str, duration: float | None, *,
                failure: Failure | None = None, retry: tuple[str, int] | None = None,
                result: Any = None, has_result: bool = False) -> None:
        job_type = ps.job_type
        own = job.job_type if job.job_type in self.cfg else job_type
        cfg = self.cfg[own]
        if not self.cfg[job_type].history or self.interval.broken:
            return
        finished = int(time.time() * 1000)
        started = finished - int((duration or 0.0) * 1000)
        policy = self._policies.get(own)
        if policy is None:  # (tier_seconds parses the durations each time)
            policy = self._policies[own] = history.Policy(
                cfg.tier_seconds, cfg.max_attempts, cfg.timeout_s)
        rec = history.attempt(
            job_id=job.job_id or f"@{job.topic}/{job.partition}/{job.offset}",
            job_type=job.job_type or job_type, attempt=job.attempt, worker=self.worker_id,
            started_at=started, finished_at=finished, outcome=outcome,
            policy=policy,
            source=(job.topic, job.partition, job.offset),
            trace_id=wire.trace_id(job.headers.get(wire.TRACEPARENT)),
            parent_job_id=job.headers.get(wire.PARENT_JOB_ID),
            enqueued_at=job.enqueued_at_ms or None, submitter=job.headers.get(wire.PRODUCER),
            error=(failure.category.value, failure.error_class, failure.message)
            if failure else None,
            retry=retry, result=result, has_result=has_result)
        if wire.BATCH in job.headers:  # a batch member: `jobs show` names its batch
            rec["batch_id"] = job.headers[wire.BATCH]
        self._send(ps, job, rec, plain=not has_result)

    def progress(self, ps: PartitionState, job: Job, fraction: float,
                 message: str | None) -> None:
        if not self.cfg[ps.job_type].history or self.interval.broken:
            return
        rec = history.event("progress", job_id=job.job_id, job_type=job.job_type,
                            at=int(time.time() * 1000), attempt=job.attempt,
                            worker=self.worker_id, fraction=fraction, message=message)
        self._send(ps, job, rec)

    def child(self, ps: PartitionState, job: Job, child_job_id: str, child_job_type: str,
              due_at: int | None = None) -> None:
        """A child job this attempt enqueued (ctx.enqueue, a chain's next step)."""
        if not self.cfg[ps.job_type].history or self.interval.broken:
            return
        rec = history.event("enqueued", job_id=job.job_id, job_type=job.job_type,
                            at=int(time.time() * 1000), attempt=job.attempt,
                            worker=self.worker_id, child_job_id=child_job_id,
                            child_job_type=child_job_type, due_at=due_at)
        self._send(ps, job, rec)

    def chain_stopped(self, ps: PartitionState, job: Job) -> None:
        """A dead-lettered chain step: where its chain stopped, and the steps not run."""
        note = chain_note(job.headers)
        if note is None or not self.cfg[ps.job_type].history or self.interval.broken:
            return
        rec = history.event("chain", job_id=job.job_id, job_type=job.job_type,
                            at=int(time.time() * 1000), attempt=job.attempt,
                            worker=self.worker_id, stopped=True, **note)
        self._send(ps, job, rec)

    def _send(self, ps: PartitionState, job: Job, rec: dict[str, Any],
              plain: bool = False) -> None:
        stream = history.stream_for(job.topic, job.partition)
        size = _EVENT_BYTES + (0 if plain else len(str(rec.get("result", ""))))
        if not plain:
            self._urgent = True
        o = self._open.get(stream)
        if o is not None and o.ps is ps:
            o.events.append(rec)
            o.plain = o.plain and plain
            o.size += size
            if o.size >= BATCH_MAX_BYTES or len(o.events) >= BATCH_MAX_EVENTS:
                self._write(stream, self._open.pop(stream))
            return
        if o is not None:  # (the partition came back in a new generation meanwhile)
            self._write(stream, self._open.pop(stream))
        if not self._open:
            self._since = time.monotonic()
        self._open[stream] = _Open(ps, (job.topic, job.partition),
                                   self.topics[ps.job_type].history,
                                   job.key or job.job_id.encode(), [rec], plain, size)

    @property
    def waiting(self) -> bool:
        """Events wait for a flush (the loop polls for it as for delivery reports)."""
        return bool(self._open)

    def flush(self, now: float | None = None) -> None:
        """Write the events gathered since the last flush; with `now` (the end of a pass of the
        loop), only once the oldest has waited LINGER_S, or when one carries a result: a
        `jobs wait` that saw the ledger's `succeeded` reads the result from here."""
        if self._open and (now is None or self._urgent or now - self._since >= LINGER_S):
            self._urgent = False
            opened, self._open = self._open, {}
            for stream, o in opened.items():
                self._write(stream, o)

    def _write(self, stream: str, o: _Open) -> None:
        interval, ps = self.interval, o.ps
        if interval.broken:
            return
        source_topic, p = o.source
        prev = self._head(stream, ps.gen, ps.ledger_tp, source_topic, p)
        if len(o.events) == 1:
            rec, key = o.events[0], o.key
        else:  # keyed by its stream: it holds many jobs' events
            rec, key = history.batch(o.events), stream.encode()
        value, digest = history.encode(rec, prev, stream, plain=o.plain)
        topic = o.topic
        try:
            interval.committer.before_produce()
            interval.publisher.send(topic, key, value, [], partition=p,
                                    on_delivery=self._delivered, serve=False)
        except (CommitAborted, ProducerFenced) as e:
            interval.break_(f"cannot produce {topic}: {e}")
            return
        except (KafkaException, SystemError) as raised:
            interval.producer_failed(raised, f"cannot produce {topic}")
            return
        self._pending[stream] = _Stream(ps.gen, digest, ps.ledger_tp)
        self.written += len(o.events)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.interval.break_(f"could not write {msg.topic()}: {err.str()}")
