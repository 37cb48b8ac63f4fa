"""From a fetched record to a job handed on: consumer errors, records of partitions no longer
ours or behind a gate, redeliveries, records routed already, then decode
(consumers/runtime/decode.py), a tier's not-yet-due head, and the key queue. Also how long the
loop's poll waits."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, cast

from confluent_kafka import KafkaError, Message, TopicPartition

from jobstream.config.durations import now_ms
from jobstream.config.topics import JobTopics
from jobstream.consumers.context import log_fields
from jobstream.consumers.errors import AssignmentMismatch, Failure, WorkerFenced
from jobstream.consumers.metrics import Metrics
from jobstream.consumers.runtime.assignment import Assignment
from jobstream.consumers.runtime.decode import decode_record, topic_carriers
from jobstream.consumers.runtime.hooks import Hooks
from jobstream.consumers.runtime.ledger import Ledger
from jobstream.consumers.runtime.parts import PartitionState
from jobstream.consumers.runtime.types import Job
from jobstream.schemas.registry import SchemaRegistry

# Handler results and delivery reports cannot wake the consumer's poll: while jobs run, each
# waits for the poll's timeout (on average half of it) before the loop notices it. So the poll
# is short then, and lengthens with the time nothing has happened (see busy_poll_s).
BUSY_POLL_S = 0.001
BUSY_POLL_MAX_S = 0.02
BUSY_POLL_SHARE = 0.05  # of the time since the loop last had something to do
IDLE_POLL_S = 0.1
# Only delivery reports due (no handler running, nothing queued): they finish offsets for the
# next commit and nothing waits on them sooner, so one poll covers the linger and the broker's
# round trip instead of a 1 ms poll every loop pass (most of the CPU of a worker at a steady,
# moderate rate).
ACKS_POLL_S = 0.005


def busy_poll_s(quiet_s: float) -> float:
    """The poll's timeout while jobs run, after `quiet_s` with nothing to do. In a steady stream
    it stays at BUSY_POLL_S. A long handler is noticed at most 5% of its run time late (and at
    most 20 ms), and the loop wakes 50 times a second instead of 1,000 while it runs: with a
    fixed 1 ms poll, 64 handlers running for a minute cost 7% of a core."""
    return min(max(BUSY_POLL_S, quiet_s * BUSY_POLL_SHARE), BUSY_POLL_MAX_S)


FETCH_BATCH = 100  # records per consume() of a busy pass


def poll_timeout(busy: bool, quiet_s: float, acks: bool = False) -> float:
    """Short while a handler's result is due (busy), a little longer while only delivery
    reports are (acks)."""
    if busy:
        return busy_poll_s(quiet_s)
    if acks:  # never shorter than a result's: acks overdue (a broker away) back off the same
        return max(ACKS_POLL_S, busy_poll_s(quiet_s))
    return IDLE_POLL_S  # a record ends an idle poll at once


def fetch(consumer: Any, fetched: bool, timeout: Callable[[], float]) -> list[Message]:
    """The records of one pass of the loop: consume() waits its whole timeout unless the batch
    fills, while poll() returns at the first record. Small batches: results are drained between
    them, so handlers get new work (500 at a time kept 64 I/O-bound threads idle ~80 ms per
    batch). After a pass that found no record (`fetched` False) the queue is most likely empty
    still: the poll (of `timeout()` seconds) comes at once (a consume() finding nothing cost as
    much as the poll, on every pass of a worker at a steady, moderate rate); a record it
    returns has the next pass take a batch."""
    msgs: list[Message] = consumer.consume(FETCH_BATCH, timeout=0) if fetched else []
    if not msgs:
        msg = consumer.poll(timeout())
        msgs = [msg] if msg is not None else []
    return msgs


class Receiver:
    def __init__(
        self,
        topics: dict[str, JobTopics],
        accepts: Mapping[str, Any],
        job_types: Collection[str],
        registry: SchemaRegistry,
        assignment: Assignment,
        ledger: Ledger,
        metrics: Metrics,
        log: Any,
        hooks: Hooks,
        *,
        submit: Callable[[PartitionState, Job], None],
        fail: Callable[[PartitionState, Job, Failure, float | None], None],
        finish: Callable[[PartitionState, int], None],
        mismatch: Callable[[], AssignmentMismatch],
    ) -> None:
        self.carriers = topic_carriers(topics)  # what a topic's records may name
        self.accepts = accepts  # js-* and/or ce_* headers, per job type
        self.job_types = job_types
        self.registry = registry
        self.assignment = assignment
        self.ledger = ledger
        self.metrics = metrics
        self.log = log
        self.hooks = hooks
        self.submit = submit
        self.fail = fail
        self.finish = finish
        self.mismatch = mismatch

    def receive(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise WorkerFenced(f"consumer error: {err.str()}")
            if err.code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL:
                raise self.mismatch()
            self.log.warning("consumer_error", error=err.str())
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is None or partition is None or offset is None:
            return  # only data messages carry all three
        tp = (topic, partition)
        ps = self.assignment.get(tp)
        if ps is None or ps.gated_until_ms:
            return  # revoked meanwhile, or behind a gate: refetched after the seek
        if ps.offsets.seen(offset):
            # librdkafka re-fetched from an older position (e.g. a late offset reset): the
            # record is already being handled here, so it is not a new job.
            self.log.warning("redelivered_skipped", topic=topic, partition=partition, offset=offset)
            return
        if self.ledger.was_routed(ps.ledger_tp, topic, partition, offset):
            # Retried or dead-lettered already (by us before a rewind, or a previous owner whose
            # offset commit trailed): routing it again would duplicate the retry or dead letter.
            ps.offsets.track(offset)
            self.finish(ps, offset)
            self.metrics.finished(ps.job_type, "deduplicated", None, None)
            self.log.info("routed_already", topic=topic, partition=partition, offset=offset)
            return
        headers = cast("list[tuple[str, bytes]] | None", msg.headers())
        job = decode_record(
            topic,
            partition,
            offset,
            msg.key(),
            msg.value(),
            headers,
            self.registry,
            self.job_types,
            carries=self.carriers.get(topic, ()),
            accepts=self.accepts,
        )
        for warning in job.header_warnings:
            self.log.warning("header_ignored", **log_fields(job), reason=warning)
        if ps.is_tier and job.failure is None and job.not_before_ms > now_ms():
            # Not due: pause this partition and come back to this very record when it is.
            ps.gated_until_ms = job.not_before_ms
            self.assignment.set_paused(ps, True)
            self.assignment.consumer.seek(TopicPartition(topic, partition, offset))
            return
        ps.offsets.track(job.offset)
        self.hooks.on_receive(job)
        if job.failure is not None:
            self.fail(ps, job, job.failure, None)
            return
        if ps.queues.submit(job.order_key, job):
            self.submit(ps, job)

