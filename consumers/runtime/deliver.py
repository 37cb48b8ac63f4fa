"""Delivering outcomes: a finished job's records go to the broker (consumers/runtime/outcomes.py
decides which), and its source offset finishes once the broker has them. A record that cannot
be written breaks the interval instead: its offset never finishes, and the whole interval is
aborted and redone from the last commit (a job is redone, never lost)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from jobstream.config.durations import now_ms
from jobstream.config.settings import JobTypeSettings, Mode, WorkerSettings
from jobstream.config.topics import JobTopics
from jobstream.consumers.errors import Failure, ResultError, WorkerFenced, classify
from jobstream.consumers.runtime import batch_members
from jobstream.consumers.runtime.assignment import Assignment
from jobstream.consumers.runtime.children import (
    ChildRecord,
    Countdown,
    children_of,
    send_children,
)
from jobstream.consumers.runtime.commit import CommitAborted, ProducerFenced
from jobstream.consumers.runtime.freeze import FreezeWatch
from jobstream.consumers.runtime.history import HistoryWriter, result_digest
from jobstream.consumers.runtime.hooks import Finished, Hooks
from jobstream.consumers.runtime.interval import Interval, State
from jobstream.consumers.runtime.ledger import ROUTED, Ledger
from jobstream.consumers.runtime.outcomes import (
    Outgoing,
    route_failure,
    routed_mark,
    success_record,
)
from jobstream.consumers.runtime.parts import PartitionState
from jobstream.consumers.runtime.types import OUTCOMES, Job, Outcome
from jobstream.producers.errors import InvalidJob
from jobstream.producers.publisher import PayloadTooLarge, Publisher
from jobstream.schemas import wire
from jobstream.schemas.history import result_bytes


class Deliverer:
    def __init__(
        self,
        ws: WorkerSettings,
        cfg: dict[str, JobTypeSettings],
        topics: dict[str, JobTopics],
        worker_id: str,
        interval: Interval,
        assignment: Assignment,
        ledger: Ledger,
        hooks: Hooks,
        freeze: FreezeWatch,
        history: HistoryWriter,
        log: Any,
        *,
        next_job: Callable[[PartitionState, Job], None],
        retry_in_place: Callable[[PartitionState, Job, float], None],
    ) -> None:
        self.ws = ws
        self.cfg = cfg
        self.topics = topics
        self.worker_id = worker_id
        self.interval = interval
        self.assignment = assignment
        self.ledger = ledger
        self.hooks = hooks
        self.freeze = freeze
        self.history = history
        self.log = log
        self.next_job = next_job
        self.retry_in_place = retry_in_place
        self.rng = random.Random()
        self.marks_due: list[tuple[PartitionState, Job, str]] = []  # at least once: on the ack
        self.outcomes_due: list[Callable[[], None]] = []  # at least once: children acknowledged
        self.due_floors: dict[tuple[str, int], int] = {}  # latest js-not-before per tier partition
        # At least once: parents' outcomes waiting for their children's acknowledgements. The
        # loop polls for reports as for a handler's result then (a job's end waits on them).
        self.gated: set[Countdown] = set()
        interval.on_end.append(self._ended)

    def _ended(self, how: State) -> None:
        if how is State.ABORTED:  # what they gate is redone: their acks finish nothing now
            self.gated.clear()

    def succeed(self, ps: PartitionState, job: Job, duration: float, result: Any = None) -> None:
        raw = None
        if result is not None and self.cfg[job.job_type].history:
            try:
                raw = result_bytes(result, self.cfg[job.job_type].result_max_bytes)
            except ValueError as e:  # the side effect happened: say so, and never retry it
                self.fail(ps, job, classify(ResultError(str(e))), duration)
                return
        nested = batch_members.opened_batch(job)
        try:  # its children (ctx.enqueue) and a chain's next step go with its success
            kids = children_of(self.interval.publisher, job, result)
        except InvalidJob as e:
            self.fail(ps, job, classify(ResultError(str(e))), duration)
            return
        member = batch_members.outcome_record(job, "succeeded", nested)  # a batch member's
        if member is not None:
            kids.append(member)
        finished = now_ms()
        self.ledger.add_pending(ps.ledger_tp, job.job_id, finished)
        digest = result_digest(raw) if raw is not None else None
        out = success_record(job, ps.ledger_tp, self.worker_id, finished, digest)
        self.produce(ps, job, out, duration, result=(result, raw is not None), children=kids)
        self.next_job(ps, job)

    def fail(self, ps: PartitionState, job: Job, failure: Failure, duration: float | None) -> None:
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
            self.due_floors,
        )
        dead = out is not None and out.outcome == "dead_lettered"
        self.hooks.after_outcome(
            Finished(job, jt, Outcome.FAILED, duration, failure, dead=dead, in_place=out is None)
        )
        if out is None:  # strict ordering: retry in place, the key (and partition) waits
            due = now_ms() + int(decision.delay_s * 1000)
            self.history.attempt(ps, job, "retried", duration, failure=failure,
                                 retry=(job.topic, due))
            self.retry_in_place(ps, job, decision.delay_s)
            return
        if out.outcome == "retried":
            self.due_floors[(out.topic, out.partition)] = out.not_before_ms
        member = batch_members.outcome_record(job, "dead_lettered") if dead else None
        self.produce(ps, job, out, duration, failure=failure,
                     children=[member] if member is not None else None)
        if dead:
            self.history.chain_stopped(ps, job)
        if duration is not None or job.failure is None:
            self.next_job(ps, job)

    def finish(self, ps: PartitionState, offset: int) -> None:
        ps.offsets.finish(offset)
        self.interval.finished += 1

    def finish_cancelled(self, ps: PartitionState, job: Job) -> None:
        """A cancelled job's offset finishes. A batch member's `cancelled` record goes first, in
        the interval (its batch could not close without it): the offset finishes once the
        broker has the record, so at least once a crash in between redoes the skip."""
        member = batch_members.outcome_record(job, batch_members.CANCELLED)
        if member is None:
            self.finish(ps, job.offset)
            return
        interval = self.interval
        if interval.broken:
            return
        gen = ps.gen

        def finished() -> None:
            cur = self.assignment.current(job.tp, gen)
            if cur is not None:
                self.finish(cur, job.offset)

        gate = Countdown(1)
        gate.then = finished
        self._send_children([member], gate, "cannot produce a batch member's record")

    def _send_children(self, records: list[ChildRecord], gate: Countdown, what: str) -> bool:
        """Produce records in the interval (each acknowledgement counts the gate down); False
        when they could not be: the interval is broken then and will be redone."""
        interval = self.interval
        try:
            interval.committer.before_produce()
            send_children(interval, records, gate)
        except (CommitAborted, ProducerFenced) as e:
            interval.break_(str(e))
            return False
        except (KafkaException, SystemError) as raised:
            interval.producer_failed(raised, what)
            return False
        return True

    def produce(self, ps: PartitionState, job: Job, out: Outgoing, duration: float | None,
                failure: Failure | None = None, result: tuple[Any, bool] = (None, False),
                children: list[ChildRecord] | None = None) -> None:
        """Send the outcome record (and its history record); the source offset finishes once
        the broker has it."""
        interval = self.interval
        if interval.broken:
            return  # the interval is being given up: adding to it would be thrown away
        gen = ps.gen
        self.hooks.before_send(job, OUTCOMES[out.outcome])  # the DLQ guard may stop us here
        # After the guard: a refused dead letter must stay unmarked. At least once, nothing ties
        # the mark to the record: it is written once the record is acknowledged (a mark for an
        # unwritten record would have the redo skip the job: lost; the other way round a crash
        # in between costs a duplicate retry at most).
        mark_after = self.ws.mode is Mode.AT_LEAST_ONCE
        if out.outcome in ROUTED and not mark_after:
            self.mark_routed(ps, job, out.outcome)

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                if self.freeze.check():  # thawed zombie: its writes time out, it must stop
                    raise WorkerFenced(f"could not write {out.topic}: {err.str()}")
                interval.break_(f"could not write {out.topic}: {err.str()}")
                return
            cur = self.assignment.current(job.tp, gen)
            if cur is not None:
                self.finish(cur, job.offset)
            if out.outcome == "succeeded":
                self.ledger.acked(ps.ledger_tp, job.job_id)
            elif mark_after and out.outcome in ROUTED:
                self.marks_due.append((ps, job, out.outcome))  # not from inside a callback
            self._record_outcome(job, out, duration)

        def send() -> None:
            if interval.broken or self.assignment.current(job.tp, gen) is None:
                return  # (deferred) the interval broke or the partition was rewound meanwhile
            try:
                interval.committer.before_produce()
                send_outcome(interval.publisher, out, on_delivery, self.log)
            except (CommitAborted, ProducerFenced) as e:  # no transaction could be begun
                # (mid broker restart, or the producer is fenced: the redo renews it)
                interval.break_(str(e))
                return
            except (KafkaException, SystemError) as raised:
                # The transaction went abortable (a write failed during a blip) or the
                # producer is fenced: redo the interval (a frozen zombie stops there instead).
                interval.producer_failed(raised, f"cannot produce {out.topic}")
                return
            self.history.attempt(
                ps, job, out.outcome, duration, failure=failure,
                retry=(out.topic, out.not_before_ms) if out.outcome == "retried" else None,
                result=result[0], has_result=result[1])
            for child in children or ():
                if child.kind == "job":
                    self.history.child(ps, job, child.job_id, child.job_type, child.due_ms)
                elif child.kind == "batch" and child.key == child.job_id.encode():
                    # a batch it opened (ctx.batch), named once, not each of its members
                    self.history.child(ps, job, child.job_id, "batch")

        if not children:
            send()
            return
        # Children first. In a transaction they commit or abort with the outcome. At least
        # once, the outcome (the ledger entry) waits for every child's acknowledgement: an
        # entry written before a child that then failed would have the redo skip the parent,
        # and the child would be lost.
        gate = Countdown(len(children))
        if mark_after:
            self.gated.add(gate)

            def release() -> None:
                self.gated.discard(gate)
                self.outcomes_due.append(send)

            gate.then = release
        if self._send_children(children, gate, "cannot produce a child job") and not mark_after:
            send()

    def write_marks(self) -> None:
        """Marks (and outcomes whose children are all written, at least once) due since the
        last call: written outside the delivery callbacks."""
        sends, self.outcomes_due = self.outcomes_due, []
        for send in sends:
            send()
        due, self.marks_due = self.marks_due, []
        for ps, job, outcome in due:
            self.mark_routed(ps, job, outcome)

    def mark_routed(self, ps: PartitionState, job: Job, outcome: str) -> None:
        """The ledger mark for a record retried or dead-lettered, in the same transaction (see
        consumers/runtime/ledger.py), or right after it at least once; a failed write breaks
        the interval."""
        interval = self.interval
        if interval.broken:
            return
        finished = now_ms()
        key, mark = routed_mark(job, outcome, ps.ledger_tp, self.worker_id, finished)
        self.ledger.add_pending(ps.ledger_tp, key, finished)

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                interval.break_(f"could not write a ledger mark: {err.str()}")
            else:
                self.ledger.acked(ps.ledger_tp, key)

        try:
            interval.committer.before_produce()
            interval.publisher.send(
                mark.topic,
                mark.key,
                mark.value,
                [],
                partition=mark.partition,
                on_delivery=on_delivery,
                serve=False,  # the loop serves delivery reports
            )
        except (CommitAborted, ProducerFenced) as e:
            interval.break_(f"cannot write a ledger mark: {e}")
        except (KafkaException, SystemError) as raised:
            interval.producer_failed(raised, "cannot write a ledger mark")

    def _record_outcome(self, job: Job, out: Outgoing, duration: float | None) -> None:
        self.hooks.after_outcome(
            Finished(job, job.job_type or "unknown", OUTCOMES[out.outcome], duration, tier=out.tier)
        )


def send_outcome(publisher: Publisher, out: Outgoing, on_delivery: Any, log: Any) -> None:
    """Produce an outcome record. A retry or dead letter whose original record plus failure
    headers is over the topic's limit keeps the record's bytes with the stack dropped and the
    message cut, and lets the broker decide, rather than crash on it after every restart."""
    try:
        publisher.send(out.topic, out.key, out.value, out.headers, partition=out.partition,
                       on_delivery=on_delivery, serve=False)
    except PayloadTooLarge as e:
        if out.outcome not in ("retried", "dead_lettered"):
            raise
        log.warning("failure_headers_trimmed", topic=out.topic, error=str(e))
        slim = [(k, _slim(k, v)) for k, v in out.headers]
        publisher.send(out.topic, out.key, out.value, slim, partition=out.partition,
                       on_delivery=on_delivery, check_size=False, serve=False)


def _slim(name: str, value: bytes) -> bytes:
    if name == wire.ERROR_STACK:
        return b""
    if name == wire.ERROR_MESSAGE:
        return wire.cut(value.decode("utf-8", "replace"), 256).encode("utf-8")
    return value
