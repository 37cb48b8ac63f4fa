"""Outcomes of a job: the ledger record of a success, the retry or dead letter of a failure
(with its routing mark), and finishing the source offset once the broker has the record.
Part of Worker (consumers/worker.py)."""

from __future__ import annotations

import heapq
import random
import time
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Message

from jobstream.config.settings import JobTypeSettings, Mode, WorkerSettings
from jobstream.config.topics import JobTopics
from jobstream.consumers.commit import CommitAborted, Committer, ProducerFenced, kafka_exception
from jobstream.consumers.context import log_fields
from jobstream.consumers.decode import Job
from jobstream.consumers.errors import (
    DlqGuardTripped,
    Failure,
    ResultError,
    WorkerFenced,
    classify,
)
from jobstream.consumers.freeze import FreezeWatch
from jobstream.consumers.history_writer import HistoryWriter, result_digest
from jobstream.consumers.ledger import ROUTED, SUCCEEDED, Ledger, encode_entry, routed_key
from jobstream.consumers.metrics import Metrics
from jobstream.consumers.protection import DlqGuard
from jobstream.consumers.rebalance import PartitionState
from jobstream.consumers.routing import Outgoing, route_failure, send_outcome
from jobstream.producers.publisher import Publisher
from jobstream.schemas.history import result_bytes

_GUARDED = ("succeeded", "retried", "dead_lettered")


def now_ms() -> int:
    return int(time.time() * 1000)


def _ms(duration: float | None) -> float | None:
    return None if duration is None else round(duration * 1000, 3)


class Outcomes:
    # provided by Worker
    ws: WorkerSettings
    cfg: dict[str, JobTypeSettings]
    topics: dict[str, JobTopics]
    publisher: Publisher
    committer: Committer
    ledger: Ledger
    history: HistoryWriter
    metrics: Metrics
    freeze: FreezeWatch
    dlq_guard: DlqGuard | None
    log: Any
    rng: random.Random
    worker_id: str
    parts: dict[tuple[str, int], PartitionState]
    _broken: str | None
    _seq: int
    _waiting: list[tuple[float, int, Job]]
    _marks_due: list[tuple[PartitionState, Job, str]]  # at least once: records acknowledged
    _finished_since_commit: int
    _due_floors: dict[tuple[str, int], int]  # latest js-not-before written per tier partition

    if TYPE_CHECKING:

        def _next(self, ps: PartitionState, job: Job) -> None: ...

    def _succeed(self, ps: PartitionState, job: Job, duration: float, result: Any = None) -> None:
        raw = None
        if result is not None and self.cfg[job.job_type].history:
            try:
                raw = result_bytes(result, self.cfg[job.job_type].result_max_bytes)
            except ValueError as e:  # the side effect happened: say so, and never retry it
                self._fail(ps, job, classify(ResultError(str(e))), duration)
                return
        finished = now_ms()
        value = encode_entry(SUCCEEDED, finished, job.attempt, self.worker_id,
                             result_digest(raw) if raw is not None else None)
        self.ledger.add_pending(ps.ledger_tp, job.job_id, finished)
        self._produce(
            ps,
            job,
            Outgoing(ps.ledger_tp[0], ps.ledger_tp[1], job.job_id.encode(), value, [], "succeeded"),
            duration,
            result=(result, raw is not None),
        )
        self._next(ps, job)

    def _fail(self, ps: PartitionState, job: Job, failure: Failure, duration: float | None) -> None:
        # A job named on another type's topic goes to the DLQ of the topic it came from.
        own = job.job_type in self.cfg and job.topic in self.topics[job.job_type].consumed
        jt = job.job_type if own else ps.job_type
        decision, out = route_failure(
            job,
            failure,
            self.cfg[jt],
            self.topics[jt],
            self.worker_id,
            now_ms(),
            self.ws.retry_jitter,
            self.rng,
            self._due_floors,
        )
        dead = out is not None and out.outcome == "dead_lettered"
        (self.log.warning if dead else self.log.info)(
            "failed",
            **log_fields(job),
            category=failure.category.value,
            error_class=failure.error_class,
            error=failure.message,
            duration_ms=_ms(duration),
        )
        if out is None:  # strict ordering: retry in place, the key (and partition) waits
            job.attempt += 1
            self._seq += 1
            heapq.heappush(self._waiting, (time.monotonic() + decision.delay_s, self._seq, job))
            job.holds_partition = True
            ps.held += 1
            self.metrics.job_finished(jt, "failed", duration, None)
            if not self._broken:
                self.history.attempt(ps.job_type, ps.gen, ps.ledger_tp, job, "retried", duration,
                                     failure=failure, retry=(job.topic, now_ms() + int(
                                         decision.delay_s * 1000)))
            return
        if out.outcome == "retried":
            self._due_floors[(out.topic, out.partition)] = out.not_before_ms
        self._produce(ps, job, out, duration, failure=failure)
        if duration is not None or job.failure is None:
            self._next(ps, job)

    def _produce(self, ps: PartitionState, job: Job, out: Outgoing, duration: float | None,
                 failure: Failure | None = None, result: tuple[Any, bool] = (None, False)) -> None:
        """Send the outcome record; the source offset finishes once the broker has it. A record
        that cannot be written breaks the interval: its offset never finishes, and the whole
        interval is aborted and redone from the last commit (a job is redone, never lost)."""
        if self._broken:
            return  # the interval is being given up: adding to it would be thrown away
        gen = ps.gen
        if self.dlq_guard is not None and out.outcome in _GUARDED:
            self._guard(out.outcome == "dead_lettered")
        # After the guard: a refused dead letter must stay unmarked. At least once, nothing ties
        # the mark to the record: it is written once the record is acknowledged (a mark for an
        # unwritten record would have the redo skip the job: lost; the other way round a crash
        # in between costs a duplicate retry at most).
        mark_after = self.ws.mode is Mode.AT_LEAST_ONCE
        if out.outcome in ROUTED and not mark_after:
            self._mark_routed(ps, job, out.outcome)

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                if self.freeze.check():  # thawed zombie: its writes time out, it must stop
                    raise WorkerFenced(f"could not write {out.topic}: {err.str()}")
                self._broken = self._broken or f"could not write {out.topic}: {err.str()}"
                return
            cur = self.parts.get(job.tp)
            if cur is not None and cur.gen == gen:
                self._finish(cur, job.offset)
            if out.outcome == "succeeded":
                self.ledger.acked(ps.ledger_tp, job.job_id)
            elif mark_after and out.outcome in ROUTED:
                self._marks_due.append((ps, job, out.outcome))  # not from inside a callback
            self._record_outcome(job, out, duration)

        try:
            self.committer.before_produce()
            send_outcome(self.publisher, out, on_delivery, self.log)
        except (CommitAborted, ProducerFenced, KafkaException, SystemError) as e:
            self._send_failed(e, f"cannot produce {out.topic}")
            return
        self.history.attempt(
            ps.job_type, gen, ps.ledger_tp, job, out.outcome, duration, failure=failure,
            retry=(out.topic, out.not_before_ms) if out.outcome == "retried" else None,
            result=result[0], has_result=result[1])

    def _send_failed(self, raised: BaseException, what: str) -> None:
        if isinstance(raised, CommitAborted | ProducerFenced):  # no transaction could be begun
            # (mid broker restart, or the producer is fenced: the redo renews it)
            self._broken = self._broken or str(raised)
        else:
            # The transaction went abortable (a write failed during a blip) or the producer is
            # fenced: redo the interval (a frozen zombie stops there instead).
            self._producer_failed(raised, what)

    def _break(self, reason: str) -> None:
        self._broken = self._broken or reason

    def _write_heads(self) -> None:
        """The chain heads this interval moved, into the ledger with it (history_writer.py)."""
        if self._broken:
            return
        for ledger_tp, key, value in self.history.heads_to_write():
            try:
                self.committer.before_produce()
                self.publisher.send(ledger_tp[0], key.encode(), value, [],
                                    partition=ledger_tp[1], serve=False,
                                    on_delivery=self._on_head_delivery)
            except (CommitAborted, ProducerFenced, KafkaException, SystemError) as e:
                self._send_failed(e, "cannot write a history chain head")
                return

    def _on_head_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._break(f"could not write a history chain head: {err.str()}")

    def _producer_failed(self, raised: BaseException, what: str) -> None:
        """A producer call raised: note a fencing error for the redo (it renews the producer
        then) and break the interval. Anything but a Kafka error is raised again."""
        err = kafka_exception(raised).args[0]
        self.committer.saw(err)
        self._broken = self._broken or f"{what}: {err}"

    def _write_marks(self) -> None:
        due, self._marks_due = self._marks_due, []
        for ps, job, outcome in due:
            self._mark_routed(ps, job, outcome)

    def _mark_routed(self, ps: PartitionState, job: Job, outcome: str) -> None:
        """The ledger mark for a record retried or dead-lettered, in the same transaction (see
        consumers/ledger.py), or right after it at least once; a failed write breaks the
        interval."""
        if self._broken:
            return
        key = routed_key(job.topic, job.partition, job.offset)
        finished = now_ms()
        self.ledger.add_pending(ps.ledger_tp, key, finished)

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._broken = self._broken or f"could not write a ledger mark: {err.str()}"
            else:
                self.ledger.acked(ps.ledger_tp, key)

        try:
            self.committer.before_produce()
            self.publisher.send(
                ps.ledger_tp[0],
                key.encode(),
                encode_entry(ROUTED[outcome], finished, job.attempt, self.worker_id),
                [],
                partition=ps.ledger_tp[1],
                on_delivery=on_delivery,
                serve=False,  # the loop serves delivery reports
            )
        except (CommitAborted, ProducerFenced) as e:
            self._broken = f"cannot write a ledger mark: {e}"
        except (KafkaException, SystemError) as raised:
            self._producer_failed(raised, "cannot write a ledger mark")

    def _record_outcome(self, job: Job, out: Outgoing, duration: float | None) -> None:
        jt = job.job_type or "unknown"
        latency = (now_ms() - job.enqueued_at_ms) / 1000 if job.enqueued_at_ms else None
        self.metrics.job_finished(jt, out.outcome, duration, latency)
        fields = log_fields(job)
        if out.outcome == "retried":
            self.metrics.retried(jt, out.tier or "")
            self.log.info("retried", **fields, tier=out.tier, duration_ms=_ms(duration))
        elif out.outcome == "dead_lettered":  # WARNING: a WARNING filter must still show it
            self.log.warning(out.outcome, **fields, duration_ms=_ms(duration))
        else:
            self.log.info(out.outcome, **fields, duration_ms=_ms(duration))

    def _finish(self, ps: PartitionState, offset: int) -> None:
        ps.offsets.finish(offset)
        self._finished_since_commit += 1

    def _guard(self, dead_letter: bool) -> None:
        """Count a routing decision; refuse a dead letter that would pass the guard's limit
        (its offset stays unfinished, so the next owner gets the job, not the DLQ)."""
        assert self.dlq_guard is not None and self.ws.dlq_guard is not None
        now = time.monotonic()
        self.dlq_guard.record(dead_letter, now)
        if dead_letter and self.dlq_guard.tripped(now):
            g = self.ws.dlq_guard
            raise DlqGuardTripped(
                f"more than {g.max_ratio:.0%} of the jobs in the last {g.window_s:g}s were "
                "dead-lettered (worker.dlq_guard); stopping so a bad deploy does not "
                "dead-letter everything"
            )
