"""Writing T.history: one record per attempt's outcome (and per progress update), produced in the
worker's commit interval: in transactional mode it commits or aborts with the offsets; at least
once it is acknowledged before the offsets are committed.

Each source partition (topic, p) the worker owns is one chain stream, `<topic>:<p>`, written
only by that partition's owner. Its head (the last record's hash) is kept per interval: a
record extends the interval's head, a commit makes it the committed head, an abort drops it.
At each commit the heads the interval moved go to the ledger (`!history-head/<topic>/<p>`) in
the same transaction, so the next owner of the partition, whose ledger restore reads them,
continues the chain where it ended.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from jobstream.config.settings import JobTypeSettings
from jobstream.config.topics import JobTopics
from jobstream.consumers.commit import CommitAborted, ProducerFenced
from jobstream.consumers.decode import Job
from jobstream.consumers.errors import Failure
from jobstream.consumers.ledger import encode_head, head_key
from jobstream.schemas import history, wire
from jobstream.schemas.chain import GENESIS


def result_digest(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


@dataclass(frozen=True)
class Sender:
    """What the writer needs of the worker: produce into the interval (before_produce begins
    its transaction), and break the interval when a write fails (`broken` for a failed
    delivery, `failed` for a call that raised)."""

    produce: Callable[..., None]
    before_produce: Callable[[], None]
    broken: Callable[[str], None]
    failed: Callable[[BaseException, str], None]


@dataclass
class _Stream:
    gen: int
    head: str
    ledger_tp: tuple[str, int]


class HistoryWriter:
    def __init__(self, topics: dict[str, JobTopics], cfg: dict[str, JobTypeSettings],
                 worker_id: str, sender: Sender,
                 ledger_head: Callable[[tuple[str, int], str], str | None]) -> None:
        self.topics, self.cfg, self.worker_id = topics, cfg, worker_id
        self.sender = sender
        self._ledger_head = ledger_head  # (ledger tp, head key) -> head restored, if any
        self._committed: dict[str, _Stream] = {}
        self._pending: dict[str, _Stream] = {}
        self.written = 0

    # -- chain heads ---------------------------------------------------------------------

    def _head(self, stream: str, gen: int, ledger_tp: tuple[str, int], topic: str,
              partition: int) -> str:
        for book in (self._pending, self._committed):
            s = book.get(stream)
            if s is not None and s.gen == gen:
                return s.head
        return self._ledger_head(ledger_tp, head_key(topic, partition)) or GENESIS

    def committed(self) -> None:
        self._committed.update(self._pending)
        self._pending.clear()

    def aborted(self) -> None:
        self._pending.clear()

    def heads_to_write(self) -> list[tuple[tuple[str, int], str, bytes]]:
        """(ledger tp, key, value) of each head this interval moved: sent before the commit."""
        out = []
        for stream, s in self._pending.items():
            topic, _, p = stream.rpartition(":")
            out.append((s.ledger_tp, head_key(topic, int(p)), encode_head(s.head)))
        return out

    # -- records -------------------------------------------------------------------------

    def attempt(self, job_type: str, gen: int, ledger_tp: tuple[str, int], job: Job,
                outcome: str, duration: float | None, *, failure: Failure | None = None,
                retry: tuple[str, int] | None = None, result: Any = None,
                has_result: bool = False) -> None:
        cfg = self.cfg.get(job.job_type) or self.cfg[job_type]
        if not self.cfg[job_type].history:
            return
        finished = int(time.time() * 1000)
        started = finished - int((duration or 0.0) * 1000)
        rec = history.attempt(
            job_id=job.job_id or f"@{job.topic}/{job.partition}/{job.offset}",
            job_type=job.job_type or job_type, attempt=job.attempt, worker=self.worker_id,
            started_at=started, finished_at=finished, outcome=outcome,
            policy=history.Policy(cfg.tier_seconds, cfg.max_attempts, cfg.timeout_s),
            source=(job.topic, job.partition, job.offset),
            trace_id=wire.trace_id(job.headers.get(wire.TRACEPARENT)),
            parent_job_id=job.headers.get(wire.PARENT_JOB_ID),
            enqueued_at=job.enqueued_at_ms or None, submitter=job.headers.get(wire.PRODUCER),
            error=(failure.category.value, failure.error_class, failure.message)
            if failure else None,
            retry=retry, result=result, has_result=has_result)
        self._send(job_type, gen, ledger_tp, job, rec)

    def progress(self, job_type: str, gen: int, ledger_tp: tuple[str, int], job: Job,
                 fraction: float, message: str | None) -> None:
        if not self.cfg[job_type].history:
            return
        rec = history.event("progress", job_id=job.job_id, job_type=job.job_type,
                            at=int(time.time() * 1000), attempt=job.attempt,
                            worker=self.worker_id, fraction=fraction, message=message)
        self._send(job_type, gen, ledger_tp, job, rec)

    def _send(self, job_type: str, gen: int, ledger_tp: tuple[str, int], job: Job,
              rec: dict[str, Any]) -> None:
        stream = history.stream_for(job.topic, job.partition)
        prev = self._head(stream, gen, ledger_tp, job.topic, job.partition)
        value, digest = history.encode(rec, prev, stream)
        topic = self.topics[job_type].history

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self.sender.broken(f"could not write {topic}: {err.str()}")

        try:
            self.sender.before_produce()
            self.sender.produce(topic, job.key or job.job_id.encode(), value, [],
                                partition=job.partition, on_delivery=on_delivery, serve=False)
        except (CommitAborted, ProducerFenced, KafkaException, SystemError) as e:
            self.sender.failed(e, f"cannot produce {topic}")
            return
        self._pending[stream] = _Stream(gen, digest, ledger_tp)
        self.written += 1
