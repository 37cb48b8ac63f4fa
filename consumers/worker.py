"""The poll loop: poll -> decode -> (gate, dedup) -> dispatch -> outcome routing -> ledger ->
commit. One thread owns the consumer, the producer and all bookkeeping; handlers run in the
executor and report back through a queue."""

from __future__ import annotations

import contextlib
import heapq
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from config.kafka import client_config
from config.logging import flush_logs, get_logger
from config.settings import JobTypeSettings, Mode, Settings
from config.topics import JobTopics, base_of, job_topics, ledger_topic, tier_delay
from consumers.commit import CommitAborted, Committer, ProducerFenced
from consumers.context import context_for, log_fields
from consumers.decode import Job, decode_record
from consumers.errors import (
    DlqGuardTripped,
    Failure,
    NotAdmitted,
    WorkerError,
    WorkerFenced,
    classify,
)
from consumers.executor import Executor, Task
from consumers.freeze import FreezeWatch
from consumers.health import Health
from consumers.jobs import JobDef
from consumers.ledger import ROUTED, SUCCEEDED, Ledger, encode_entry, routed_key
from consumers.metrics import Metrics
from consumers.offsets import PartitionOffsets
from consumers.ordering import KeyQueues
from consumers.protection import DlqGuard, JobTypeGate
from consumers.routing import Outgoing, route_failure, send_outcome
from consumers.tracing import Tracing
from producers.publisher import Publisher
from schemas.registry import SchemaRegistry

TP = tuple[str, int]
AUTH_FAILURE_LIMIT_S = 60.0
RENEW_LIMIT_S = 300.0


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class PartitionState:
    tp: TP
    job_type: str
    ledger_tp: TP
    is_tier: bool
    gen: int
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    queues: KeyQueues[Job] = field(default_factory=KeyQueues)
    running: int = 0
    gated_until_ms: int = 0  # tier head not due before this
    held: int = 0  # strict-ordering jobs waiting for an in-place retry
    paused: bool = True  # as last told to the consumer

    @property
    def in_flight(self) -> int:
        return self.offsets.in_flight


class Worker:
    def __init__(
        self,
        settings: Settings,
        jobs: dict[str, JobDef],
        *,
        group: str | None = None,
        registry: SchemaRegistry | None = None,
        metrics: Metrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        self.ws = settings.worker
        self.jobs = jobs
        self.registry = registry or SchemaRegistry.from_dirs(settings.schema_dirs)
        self.metrics = metrics or Metrics()
        self.health = health or Health()
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        # bound now (logging is configured by then): no lazy proxy on the hot path
        self.log = get_logger("jobstream.worker", worker=self.worker_id).bind()
        self.group = group or self.ws.group_id
        self.cfg: dict[str, JobTypeSettings] = {jt: settings.job(jt) for jt in jobs}
        self.topics: dict[str, JobTopics] = {jt: job_topics(jt, c) for jt, c in self.cfg.items()}
        self.job_of_topic = {
            t: jt for jt, jt_topics in self.topics.items() for t in jt_topics.consumed
        }
        self.gates = {jt: JobTypeGate.for_job_type(c) for jt, c in self.cfg.items()}
        guard = self.ws.dlq_guard
        self.dlq_guard = (
            DlqGuard(guard.max_ratio, guard.window_s, guard.min_jobs) if guard else None
        )
        self.rng = random.Random()
        self.parts: dict[TP, PartitionState] = {}
        self._gen = 0
        self._stopping = False
        self._halted = False  # results are no longer routed (the DLQ guard tripped)
        self._full = False  # fetched-and-unfinished jobs reached the buffer limit
        self._broken: str | None = None  # why this interval cannot commit (a failed write)
        self._brokers_down = False
        self._last_probe = 0.0
        self._joined = False
        self._waiting: list[
            tuple[float, int, Job]
        ] = []  # (due monotonic, seq, job) in-place retries
        self._deferred: list[tuple[PartitionState, Job]] = []  # rate-limited, ready to start
        self._seq = 0
        self._finished_since_commit = 0
        self._last_commit = time.monotonic()
        self._last_lag = 0.0

        self.consumer = Consumer(
            client_config(
                settings.kafka,
                **{
                    "group.id": self.group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "partition.assignment.strategy": "cooperative-sticky",
                    "isolation.level": "read_committed",
                    "session.timeout.ms": self.ws.session_timeout_ms,
                    "max.poll.interval.ms": self.ws.max_poll_interval_ms,
                    "enable.partition.eof": False,
                    "error_cb": self._on_client_error,
                },
            )
        )
        # message.max.bytes: up to the broker's default topic limit, so a record that came in
        # near the limit can still be dead-lettered with its (trimmed) failure headers.
        producer_conf: dict[str, Any] = {"linger.ms": 2, "message.max.bytes": 1_048_588}
        if self.ws.mode is Mode.TRANSACTIONAL:
            producer_conf["transactional.id"] = f"jobstream-{self.group}-{self.worker_id}"
            producer_conf["transaction.timeout.ms"] = 10_000
        self._producer_conf = producer_conf
        self.publisher = Publisher(settings, self.registry, producer_config=producer_conf)
        self.producer = self.publisher.producer
        self.committer = Committer(self.ws.mode, self.consumer, self.producer)
        self.ledger = Ledger(settings)
        # Past the session the group has moved on: handler threads of a thawed zombie must not
        # start the jobs still queued here.
        self.freeze = FreezeWatch(self.ws.session_timeout_ms / 1000)
        self.executor = Executor(self.ws.max_in_flight, alive=self.freeze.alive)
        self.tracing = Tracing.from_environment()

    def _on_client_error(self, err: KafkaError) -> None:
        self.publisher.errors(err)  # one watch for the consumer and the producer
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_down = True  # not ready until a broker answers again (_tick probes)

    # -- group membership ------------------------------------------------------------------

    def subscribe(self) -> None:
        topics = sorted(self.job_of_topic)
        try:
            live = self.consumer.list_topics(timeout=15).topics
        except Exception as e:
            raise WorkerError(
                f"broker unreachable at {self.settings.kafka.bootstrap_servers}: {e}"
            ) from None
        missing = [t for t in topics if t not in live]
        missing += [ltp for ltp in {t.ledger for t in self.topics.values()} if ltp not in live]
        if missing:
            raise WorkerError(
                f"topics missing: {sorted(missing)}; create them with `jobstream topics apply`"
            )
        self.consumer.subscribe(
            topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self.log.info("subscribed", topics=topics, group=self.group, mode=self.ws.mode.value)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Assign ourselves so the partitions can be paused before any fetch: they stay paused
        # until their ledger view is restored.
        consumer.incremental_assign(partitions)
        if partitions:
            consumer.pause(partitions)
        self._joined = True
        self.metrics.rebalances.inc()
        ledger_tps = []
        for p in partitions:
            tp = (p.topic, p.partition)
            jt = self.job_of_topic[p.topic]
            self._gen += 1
            ltp = (ledger_topic(base_of(p.topic)), p.partition)
            self.parts[tp] = PartitionState(tp, jt, ltp, tier_delay(p.topic) is not None, self._gen)
            ledger_tps.append(ltp)
        self.ledger.acquire(ledger_tps)
        self.log.info("assigned", partitions=[f"{p.topic}[{p.partition}]" for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions if (p.topic, p.partition) in self.parts]
        self.metrics.rebalances.inc()
        for tp in tps:
            self.parts[tp].queues.drain()  # not started: their offsets stay uncommitted
        self._waiting = [w for w in self._waiting if w[2].tp not in tps]
        self._deferred = [d for d in self._deferred if d[0].tp not in tps]
        deadline = time.monotonic() + self.ws.revoke_grace_s
        while any(self.parts[tp].running for tp in tps) and time.monotonic() < deadline:
            self._drain_results(block_s=0.05)
            self.producer.poll(0)
        self._commit()
        for tp in tps:
            self._drop(tp)
        self.log.info("revoked", partitions=[f"{t}[{p}]" for t, p in tps])

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Another member may own these now: whatever we hold for them must not be committed.
        frozen = self.freeze.check()
        with contextlib.suppress(ProducerFenced):  # renewed when the interval is redone
            self.committer.abort()
        self.ledger.aborted()
        for p in partitions:
            self._drop((p.topic, p.partition))
        if frozen and self.ws.mode is Mode.TRANSACTIONAL:
            # This process stood still past the session (SIGSTOP, a paused VM): a zombie. Its
            # handler threads may have run on since; stop rather than guess what is stale.
            raise WorkerFenced(
                "partitions lost (session timed out); stopping so nothing stale is written"
            )
        # The loop kept running but could not reach the group (a broker restart, a network
        # split): the aborted interval is redone from the last commit and the group rejoined.
        lost = [f"{p.topic}[{p.partition}]" for p in partitions]
        self.log.warning("partitions_lost", partitions=lost)
        self._broken = None
        self._rewind()
        self.freeze.clear()

    def _drop(self, tp: TP) -> None:
        ps = self.parts.pop(tp, None)
        if ps is not None:
            self.ledger.release(ps.ledger_tp)
            self.metrics.drop_lag(*tp)

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.subscribe()
            while not self._stopping:
                busy = any(ps.running or ps.queues.queued for ps in self.parts.values())
                # consume() waits its whole timeout unless the batch fills; poll() returns at
                # the first record, so an idle worker starts a new job at once.
                msgs = self.consumer.consume(500, timeout=0)
                if not msgs:
                    msg = self.consumer.poll(0.005 if busy else 0.1)
                    msgs = [msg] if msg is not None else []
                self.health.beat()
                for msg in msgs:
                    self._receive(msg)
                self._drain_results()
                self.producer.poll(0)
                if self._broken:
                    self._abort_interval()
                self._tick()
        except WorkerFenced as e:
            self.log.error("fenced", reason=str(e))
            self._close(commit=False)
            return 3
        except DlqGuardTripped as e:
            self.log.error("dlq_guard_tripped", reason=str(e))
            self._halted = True
            self._shutdown()  # what is finished (dead letters included) is committed
            return 4
        except WorkerError as e:
            self.log.error("worker_error", reason=str(e))
            self._close(commit=False)
            return 1
        self._shutdown()
        return 0

    def stop(self) -> None:
        self._stopping = True

    def _receive(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise WorkerFenced(f"consumer error: {err.str()}")
            self.log.warning("consumer_error", error=err.str())
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is None or partition is None or offset is None:
            return  # only data messages carry all three
        tp = (topic, partition)
        ps = self.parts.get(tp)
        if ps is None or ps.gated_until_ms:
            return  # revoked meanwhile, or behind a gate: refetched after the seek
        if ps.offsets.seen(offset):
            # librdkafka re-fetched from an older position (e.g. a late offset reset): the
            # record is already being handled here, so it is not a new job.
            self.log.warning("redelivered_skipped", topic=topic, partition=partition, offset=offset)
            return
        if self.ledger.is_done(ps.ledger_tp, routed_key(topic, partition, offset)):
            # Retried or dead-lettered already (by us before a rewind, or a previous owner whose
            # offset commit trailed): routing it again would duplicate the retry or dead letter.
            ps.offsets.track(offset)
            self._finish(ps, offset)
            self.metrics.job_finished(ps.job_type, "deduplicated", None, None)
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
            self.jobs.keys(),
        )
        if ps.is_tier and job.failure is None and job.not_before_ms > now_ms():
            # Not due: pause this partition and come back to this very record when it is.
            ps.gated_until_ms = job.not_before_ms
            self._set_paused(ps, True)
            self.consumer.seek(TopicPartition(topic, partition, offset))
            return
        ps.offsets.track(job.offset)
        self.log.info("received", **log_fields(job))
        if job.failure is not None:
            self._fail(ps, job, job.failure, None)
            return
        if ps.queues.submit(job.order_key, job):
            self._start(ps, job)

    def _start(self, ps: PartitionState, job: Job) -> None:
        if self.ledger.is_done(ps.ledger_tp, job.job_id):
            self.metrics.job_finished(job.job_type, "deduplicated", None, None)
            self.log.info("deduplicated", **log_fields(job))
            self._finish(ps, job.offset)
            self._next(ps, job)
            return
        gate = self.gates[job.job_type]
        if not gate.try_start(time.monotonic()):
            self._deferred.append((ps, job))  # rate limited or breaker open: started later
            return
        jd = self.jobs[job.job_type]
        ctx = context_for(job, self.log)
        func = jd.func
        if self.tracing is not None:
            func = self.tracing.wrap(func, jd.is_async, job)
        ps.running += 1
        self.log.info("started", **log_fields(job))
        self.executor.submit(
            Task(
                func,
                (job.payload, ctx),
                jd.is_async,
                self.cfg[job.job_type].timeout_s,
                (ps.gen, job),
                gate if gate.breaker is not None else None,
            )
        )

    def _next(self, ps: PartitionState, job: Job) -> None:
        nxt = ps.queues.done(job.order_key)
        if nxt is not None:
            self._start(ps, nxt)

    def _drain_results(self, block_s: float = 0.0) -> None:
        results = self.executor.results
        if block_s:
            self.health.beat()  # a wait loop (revoke, shutdown) is the poll thread alive too
            self.executor.check_timeouts()  # a hung handler must not hold a revoke or shutdown
            if results.empty():
                time.sleep(block_s)
        while not results.empty():
            (gen, job), error, duration = results.get()
            ps = self.parts.get(job.tp)
            if ps is None or ps.gen != gen:
                continue  # its partition was revoked while it ran: the new owner redoes it
            ps.running -= 1
            if self._halted:
                continue  # left unfinished: the partition's next owner runs it
            if isinstance(error, NotAdmitted):
                self._deferred.append((ps, job))  # the breaker opened while it waited
                continue
            if error is None:
                self._succeed(ps, job, duration)
            else:
                failure = classify(error, self.cfg[job.job_type].permanent_errors)
                self._fail(ps, job, failure, duration)

    # -- outcomes --------------------------------------------------------------------------

    def _succeed(self, ps: PartitionState, job: Job, duration: float) -> None:
        finished = now_ms()
        value = encode_entry(SUCCEEDED, finished, job.attempt, self.worker_id)
        self.ledger.add_pending(ps.ledger_tp, job.job_id, finished)
        self._produce(
            ps,
            job,
            Outgoing(ps.ledger_tp[0], ps.ledger_tp[1], job.job_id.encode(), value, [], "succeeded"),
            duration,
        )
        self._next(ps, job)

    def _fail(self, ps: PartitionState, job: Job, failure: Failure, duration: float | None) -> None:
        jt = job.job_type if job.job_type in self.cfg else ps.job_type
        decision, out = route_failure(
            job,
            failure,
            self.cfg[jt],
            self.topics[jt],
            self.worker_id,
            now_ms(),
            self.ws.retry_jitter,
            self.rng,
        )
        self.log.info(
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
            ps.held += 1
            self.metrics.job_finished(jt, "failed", duration, None)
            return
        self._produce(ps, job, out, duration)
        if duration is not None or job.failure is None:
            self._next(ps, job)

    def _produce(self, ps: PartitionState, job: Job, out: Outgoing, duration: float | None) -> None:
        """Send the outcome record; the source offset finishes once the broker has it. A record
        that cannot be written breaks the interval: its offset never finishes, and the whole
        interval is aborted and redone from the last commit (a job is redone, never lost)."""
        if self._broken:
            return  # the interval is being given up: adding to it would be thrown away
        gen = ps.gen
        if self.dlq_guard is not None and out.outcome in _GUARDED:
            self._guard(out.outcome == "dead_lettered")
        if out.outcome in ROUTED:  # after the guard: a refused dead letter must stay unmarked
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
            self._record_outcome(job, out, duration)

        try:
            self.committer.before_produce()
            send_outcome(self.publisher, out, on_delivery, self.log)
        except CommitAborted as e:  # no transaction could be begun (e.g. mid broker restart)
            self._broken = str(e)
        except KafkaException as e:
            # The transaction went abortable (a write failed during a blip) or the producer is
            # fenced: redo the interval (a frozen zombie stops there instead).
            self._broken = f"cannot produce {out.topic}: {e.args[0]}"

    def _mark_routed(self, ps: PartitionState, job: Job, outcome: str) -> None:
        """The ledger mark for a record about to be retried or dead-lettered, in the same
        transaction (see consumers/ledger.py); a failed write breaks the interval."""
        if self._broken:
            return
        key = routed_key(job.topic, job.partition, job.offset)
        finished = now_ms()
        self.ledger.add_pending(ps.ledger_tp, key, finished)

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._broken = self._broken or f"could not write a ledger mark: {err.str()}"

        try:
            self.committer.before_produce()
            self.publisher.send(
                ps.ledger_tp[0],
                key.encode(),
                encode_entry(ROUTED[outcome], finished, job.attempt, self.worker_id),
                [],
                partition=ps.ledger_tp[1],
                on_delivery=on_delivery,
            )
        except (CommitAborted, KafkaException) as e:
            self._broken = f"cannot write a ledger mark: {e}"

    def _record_outcome(self, job: Job, out: Outgoing, duration: float | None) -> None:
        jt = job.job_type or "unknown"
        latency = (now_ms() - job.enqueued_at_ms) / 1000 if job.enqueued_at_ms else None
        self.metrics.job_finished(jt, out.outcome, duration, latency)
        fields = log_fields(job)
        if out.outcome == "retried":
            self.metrics.retried(jt, out.tier or "")
            self.log.info("retried", **fields, tier=out.tier, duration_ms=_ms(duration))
        else:
            self.log.info(out.outcome, **fields, duration_ms=_ms(duration))

    def _finish(self, ps: PartitionState, offset: int) -> None:
        ps.offsets.finish(offset)
        self._finished_since_commit += 1

    # -- periodic work ---------------------------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        flush_logs()  # buffered: one write per loop iteration, not one per log line
        self.executor.check_timeouts(now)
        for err in self.ledger.collect():
            self.log.warning("ledger_restore_failed", error=str(err))
        while self._waiting and self._waiting[0][0] <= now:
            _, _, job = heapq.heappop(self._waiting)
            ps = self.parts.get(job.tp)
            if ps is not None:
                ps.held -= 1
                self._start(ps, job)
        if self._deferred:
            deferred, self._deferred = self._deferred, []
            for ps, job in deferred:
                if job.tp in self.parts:
                    self._start(ps, job)
        self._watch_protection(now)
        self._reconcile_pauses()
        if (
            (now - self._last_commit) * 1000 >= self.ws.commit_interval_ms
            or self._finished_since_commit >= self.ws.commit_max_records
        ):
            self._commit()
        if now - self._last_lag >= 5.0:
            self._last_lag = now
            self._refresh_gauges()
            if self.publisher.errors.failing_for(now) >= AUTH_FAILURE_LIMIT_S:
                # Revoked credentials or a replaced CA: retrying will not fix it, and a
                # restart makes the start-up check say so plainly.
                raise WorkerError(
                    f"the brokers keep refusing us{self.publisher.errors.explain()}"
                )
        if self._brokers_down and now - self._last_probe >= 1.0:
            self._last_probe = now
            self._brokers_down = not self._broker_answers()
        restoring = not all(self.ledger.ready(ps.ledger_tp) for ps in self.parts.values())
        self.health.ready = self._joined and not restoring and not self._brokers_down
        if self.health.ready:
            self.health.reason = "ready"
        elif not self._joined:
            self.health.reason = "not joined yet"
        elif self._brokers_down:
            self.health.reason = f"no broker reachable at {self.settings.kafka.bootstrap_servers}"
        else:
            self.health.reason = "restoring ledger views"

    def _broker_answers(self) -> bool:
        try:
            self.consumer.list_topics(timeout=0.5)
            return True
        except KafkaException:
            return False

    def _watch_protection(self, now: float) -> None:
        for jt, gate in self.gates.items():
            for state in gate.transitions(now):
                self.metrics.set_breaker(jt, state.value)
                self.log.warning("circuit_" + state.value, job_type=jt)

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

    def _reconcile_pauses(self) -> None:
        # Pausing makes librdkafka drop what it prefetched, and the refetch after resuming takes
        # up to a second: pause only once a buffer of fetched jobs waits behind the running ones,
        # and resume while half of it is left, so the refetch lands before the pool runs dry.
        in_flight = sum(ps.in_flight for ps in self.parts.values())
        if in_flight >= self.ws.max_in_flight + self.ws.max_buffered:
            self._full = True
        elif in_flight <= self.ws.max_in_flight + self.ws.max_buffered // 2:
            self._full = False
        full = self._full
        wall = now_ms()
        mono = time.monotonic()
        held_types = {ps.job_type for ps, _ in self._deferred}
        held_types.update(jt for jt, g in self.gates.items() if not g.accepting(mono))
        for ps in self.parts.values():
            if ps.gated_until_ms and ps.gated_until_ms <= wall:
                ps.gated_until_ms = 0
            want = (
                self._stopping
                or full
                or bool(ps.gated_until_ms)
                or ps.held > 0
                or not self.ledger.ready(ps.ledger_tp)
                or ps.job_type in held_types
            )
            if want != ps.paused:
                self._set_paused(ps, want)

    def _set_paused(self, ps: PartitionState, paused: bool) -> None:
        tp = [TopicPartition(*ps.tp)]
        if paused:
            self.consumer.pause(tp)
        else:
            self.consumer.resume(tp)
        ps.paused = paused

    def _commit(self) -> None:
        if self.committer.in_txn:
            # commit_transaction makes every record produced so far visible, so the offsets
            # must cover them all: wait for their acknowledgements (which finish the source
            # offsets) before reading the offsets. Else a ledger or DLQ record could commit
            # while its source offset does not, and the next owner would redo the job.
            self.producer.flush(self.committer.timeout_s)
        if self._broken:
            self._abort_interval()
            return
        offsets: dict[TP, int] = {}
        for tp, ps in self.parts.items():
            off = ps.offsets.commit_offset()
            if off is not None:
                offsets[tp] = off
        try:
            self.committer.commit(offsets)
        except CommitAborted as e:
            self._broken = str(e)
            self._abort_interval()
            return
        except ProducerFenced as e:
            self._broken = str(e)
            self._abort_interval(renew=True)
            return
        self.ledger.committed()
        for tp, off in offsets.items():
            self.parts[tp].offsets.mark_committed(off)
        self._finished_since_commit = 0
        self._last_commit = time.monotonic()

    def _abort_interval(self, renew: bool = False) -> None:
        """Give up everything since the last commit (none of it is visible) and redo it."""
        reason = self._broken
        if self.freeze.check():
            # Frozen past the session: the group moved on and our transaction was timed out.
            self.ledger.aborted()
            raise WorkerFenced(f"stood still past the session, then: {reason}")
        self.log.warning("interval_aborted", reason=reason)
        self.metrics.aborts.inc()
        self._broken = None
        if not renew:
            try:
                self.committer.abort()
            except ProducerFenced:
                renew = True
        if renew:
            self._renew_producer(reason)
        self._rewind()

    def _renew_producer(self, reason: str | None) -> None:
        """Our transactional id is ours alone, so a fenced producer means the broker timed out
        our transaction (an outage longer than transaction.timeout.ms), not a second owner: a
        new producer under the same id bumps the epoch and goes on. Waits out an outage."""
        self.log.warning("producer_renewed", reason=reason)
        deadline = time.monotonic() + RENEW_LIMIT_S
        while True:
            self.health.beat()
            publisher = Publisher(
                self.settings, self.registry, producer_config=self._producer_conf
            )
            try:
                committer = Committer(self.ws.mode, self.consumer, publisher.producer)
                break
            except WorkerFenced as e:
                if time.monotonic() >= deadline:
                    raise WorkerFenced(f"cannot renew the producer: {e}") from None
                self.log.warning("producer_renew_retry", error=str(e))
        self.publisher, self.producer, self.committer = publisher, publisher.producer, committer

    def _rewind(self) -> None:
        """Nothing since the last commit became visible: redo it. Every owned partition goes
        back to its committed offset with fresh state; results of jobs still running belong to
        the old generation and are ignored."""
        self.ledger.aborted()
        self._waiting.clear()
        self._deferred.clear()
        self._finished_since_commit = 0
        self._last_commit = time.monotonic()
        if not self.parts:
            return
        try:
            committed = self._committed_offsets()
            for tpo in committed:
                tp = (tpo.topic, tpo.partition)
                old = self.parts[tp]
                self._gen += 1
                self.parts[tp] = PartitionState(
                    tp, old.job_type, old.ledger_tp, old.is_tier, self._gen, paused=old.paused
                )
                start = tpo.offset if tpo.offset >= 0 else OFFSET_BEGINNING
                self.consumer.seek(TopicPartition(tpo.topic, tpo.partition, start))
        except Exception as e:
            # Could not move back: stop rather than skip records (nothing was committed).
            raise WorkerError(f"cannot rewind after an aborted commit: {e}") from None

    def _committed_offsets(self, attempts: int = 6) -> list[TopicPartition]:
        """The group's committed offsets, waiting out a broker restart (up to a minute)."""
        tps = [TopicPartition(*tp) for tp in self.parts]
        for attempt in range(attempts):
            try:
                return list(self.consumer.committed(tps, timeout=10))
            except KafkaException:
                if attempt == attempts - 1:
                    raise
                self.health.beat()
                self.log.warning("committed_offsets_retry", attempt=attempt + 1)
        raise AssertionError("unreachable")

    def _refresh_gauges(self) -> None:
        self.metrics.in_flight.set(sum(ps.in_flight for ps in self.parts.values()))
        self.metrics.ledger_entries.set(self.ledger.entries())
        self.ledger.expire()
        self.metrics.refresh_lag(self.consumer, list(self.parts))

    # -- shutdown --------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Stop fetching, let in-flight jobs finish within the grace period, commit, leave."""
        for ps in self.parts.values():
            ps.queues.drain()
            self._set_paused(ps, True)
        self._waiting.clear()
        self._deferred.clear()
        deadline = time.monotonic() + self.ws.shutdown_grace_s
        while any(ps.running for ps in self.parts.values()) and time.monotonic() < deadline:
            self._drain_results(block_s=0.05)
            self.producer.poll(0)
        self.producer.flush(10)
        self._close(commit=True)
        self.log.info("stopped", abandoned=self.executor.abandoned)

    def _close(self, commit: bool) -> None:
        try:
            if commit:
                self._commit()
            else:
                self.committer.abort()
        except WorkerFenced as e:
            self.log.error("final_commit_failed", reason=str(e))
        self.ledger.close()
        try:
            self.consumer.close()  # leaves the group (revoke callback commits nothing new)
        except Exception as e:
            self.log.warning("close_failed", error=str(e))
        self.executor.shutdown()

_GUARDED = ("succeeded", "retried", "dead_lettered")


def _ms(duration: float | None) -> float | None:
    return None if duration is None else round(duration * 1000, 3)
