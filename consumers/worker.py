"""The poll loop: poll -> decode -> (gate, dedup) -> dispatch -> outcome routing -> ledger ->
commit. One thread owns the consumer, the producer and all bookkeeping; handlers run in the
executor and report back through a queue. Outcomes (success, retry, dead letter) are in
consumers/outcomes.py; partitions coming and going and intervals given up in
consumers/rebalance.py."""

from __future__ import annotations

import gc
import heapq
import itertools
import os
import random
import socket
import time
import uuid
from typing import Any, cast

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from jobstream.config.kafka import client_config, group_config
from jobstream.config.logging import flush_logs, get_logger
from jobstream.config.settings import JobTypeSettings, Mode, Settings
from jobstream.config.topics import JobTopics, job_topics
from jobstream.consumers.commit import CommitAborted, Committer, ProducerFenced
from jobstream.consumers.context import context_for, log_fields
from jobstream.consumers.crashes import CrashWatch
from jobstream.consumers.decode import Job, decode_record, topic_carriers
from jobstream.consumers.errors import (
    AssignmentMismatch,
    DlqGuardTripped,
    ExitCode,
    JobTimeout,
    NotAdmitted,
    WorkerError,
    WorkerFenced,
    classify,
)
from jobstream.consumers.executor import Executor, Task
from jobstream.consumers.fetch_wake import FetchWaker
from jobstream.consumers.freeze import FreezeWatch
from jobstream.consumers.health import NO_BROKER, NOT_JOINED, READY, RESTORING, Health
from jobstream.consumers.history_writer import HistoryWriter, Sender
from jobstream.consumers.jobs import JobDef
from jobstream.consumers.ledger import Ledger, routed_key
from jobstream.consumers.metrics import Metrics
from jobstream.consumers.outcomes import Outcomes, now_ms
from jobstream.consumers.protection import DlqGuard, JobTypeGate
from jobstream.consumers.rebalance import TP, PartitionState, Rebalancing
from jobstream.consumers.tracing import Tracing
from jobstream.producers.publisher import Publisher
from jobstream.schemas.registry import SchemaRegistry

AUTH_FAILURE_LIMIT_S = 60.0
# Handler results and delivery reports cannot wake the consumer's poll: while jobs run, each
# waits for the poll's timeout (on average half of it) before the loop notices it. So the poll
# is short then, and lengthens with the time nothing has happened (see busy_poll_s).
BUSY_POLL_S = 0.001
BUSY_POLL_MAX_S = 0.02
BUSY_POLL_SHARE = 0.05  # of the time since the loop last had something to do
IDLE_POLL_S = 0.1
PROGRESS_S = 0.5  # most one progress record per running job this often
TICK_S = 0.005  # the loop's periodic checks (timeouts, pauses, protection, readiness)


def _commit_error(err: KafkaError | None) -> bool:
    return err is not None and err.code() != KafkaError._NO_OFFSET


class Worker(Rebalancing, Outcomes):
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
        self.metrics.limit_job_types(jobs)  # label values: never a record's header
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
        self.carriers = topic_carriers(self.topics)  # what a topic's records may name
        self.accepts = {jt: c.accept for jt, c in self.cfg.items()}  # js-* and/or ce_* headers
        self.gates = {jt: JobTypeGate.for_job_type(c) for jt, c in self.cfg.items()}
        guard = self.ws.dlq_guard
        self.dlq_guard = (
            DlqGuard(guard.max_ratio, guard.window_s, guard.min_jobs) if guard else None
        )
        self.rng = random.Random()
        self.parts: dict[TP, PartitionState] = {}
        self._gen = 0
        self._stopping = False
        self._stop_signal: str | None = None
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
        # Running jobs' latest progress update, set by handler threads (a list item assignment
        # is atomic), recorded by the poll thread once per tick (_record_progress).
        self._progress: dict[int, tuple[int, Job, list[Any]]] = {}
        self._progress_n = itertools.count(1)
        self._last_progress = 0.0
        self._marks_due: list[tuple[PartitionState, Job, str]] = []
        self._seq = 0
        self._finished_since_commit = 0
        self._due_floors: dict[tuple[str, int], int] = {}
        self._last_commit = time.monotonic()
        self._last_tick = 0.0
        self._last_event = 0.0  # a record, a handler's result or a delivery report
        self._last_lag = 0.0

        self.consumer = Consumer(
            client_config(
                settings.kafka,
                **{
                    "group.id": self.group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                    **group_config(self.ws),
                    "max.poll.interval.ms": self.ws.max_poll_interval_ms,
                    "enable.partition.eof": False,
                    # A resumed partition's first fetch waits this long (see fetch_wake.py).
                    "fetch.wait.max.ms": self.ws.fetch_wait_max_ms,
                    "error_cb": self._on_client_error,
                    "on_commit": self._on_commit,
                },
            )
        )
        # message.max.bytes: up to the broker's default topic limit, so a record that came in
        # near the limit can still be dead-lettered with its (trimmed) failure headers.
        producer_conf: dict[str, Any] = {
            "linger.ms": 2,
            "message.max.bytes": 1_048_588,
            # The producer's view of the brokers counts for readiness too: a consumer-protocol
            # consumer may not report all brokers down within a short outage.
            "error_cb": self._on_client_error,
        }
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
        self.executor = Executor(
            self.ws.max_in_flight,
            alive=self.freeze.alive,
            limits={jt: c.concurrency for jt, c in self.cfg.items() if c.concurrency},
        )
        self.health.watch(self.executor.loop_problem)
        self.crash_watch = CrashWatch(
            settings, self.worker_id, self.ledger, self.executor, self.parts, self.log
        )
        self.fetch_wake = FetchWaker(self.consumer)
        self.tracing = Tracing.from_environment()
        self.history = HistoryWriter(
            self.topics, self.cfg, self.worker_id,
            # Looked up at each call: a renewed producer replaces the publisher and committer.
            Sender(lambda *a, **kw: self.publisher.send(*a, **kw),
                   lambda: self.committer.before_produce(), self._break, self._send_failed),
            self.ledger.head,
        )

    def _on_client_error(self, err: KafkaError) -> None:
        self.publisher.errors(err)  # one watch for the consumer and the producer
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_down = True  # not ready until a broker answers again (_tick probes)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """Results of asynchronous offset commits (at least once): offer a failed one again."""
        failed = [p for p in partitions if _commit_error(p.error or err)]
        for p in failed:
            ps = self.parts.get((p.topic, p.partition))
            if ps is not None:
                ps.offsets.commit_failed(p.offset)
        if failed:
            self.log.warning(
                "commit_failed",
                error=str(err or failed[0].error),
                partitions=[f"{p.topic}[{p.partition}]" for p in failed],
            )

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        # What start-up made (modules, schemas, clients) lives as long as the process: out of
        # the collector's sight, a full collection scans only what came since. It scanned it
        # all before: 40-50 ms with the loop stopped, nothing collected, a few times a minute.
        gc.freeze()
        try:
            self.subscribe()
            while not self._stopping:
                # consume() waits its whole timeout unless the batch fills; poll() returns at
                # the first record, so an idle worker starts a new job at once. Batches stay
                # small: results are drained between them, so running handlers get new work
                # (500 at a time kept 64 I/O-bound threads idle for ~80 ms per batch).
                msgs = self.consumer.consume(100, timeout=0)
                if not msgs:
                    msg = self.consumer.poll(self._poll_timeout())
                    msgs = [msg] if msg is not None else []
                if msgs:
                    self._last_event = time.monotonic()
                self.health.beat()
                for msg in msgs:
                    self._receive(msg)
                self._drain_results()
                self._serve_producer()
                if self._broken:
                    self._abort_interval()
                self._tick()
        except WorkerFenced as e:
            self.log.error("fenced", reason=str(e))
            self._close(commit=False)
            return ExitCode.FENCED
        except AssignmentMismatch as e:
            self.log.error("assignment_mismatch", reason=str(e))
            self._close(commit=False)
            return ExitCode.ASSIGNMENT_MISMATCH
        except DlqGuardTripped as e:
            self.log.error("dlq_guard_tripped", reason=str(e))
            self._halted = True
            self._shutdown()  # what is finished (dead letters included) is committed
            return ExitCode.DLQ_GUARD
        except WorkerError as e:
            self.log.error("worker_error", reason=str(e))
            self._close(commit=False)
            return ExitCode.ERROR
        self.log.info(
            "stopping", signal=self._stop_signal, grace_s=self.ws.shutdown_grace_s
        )
        self._shutdown()
        return ExitCode.STOPPED

    def stop(self, signal_name: str | None = None) -> None:
        """Ask the loop to stop (safe from a signal handler: it only sets flags)."""
        self._stop_signal = signal_name
        self._stopping = True

    def _poll_timeout(self) -> float:
        """Short while a handler's result or a ledger record's acknowledgement is due."""
        busy = len(self.producer) > 0 or any(
            ps.running or ps.queues.queued for ps in self.parts.values()
        )
        if not busy:
            return IDLE_POLL_S  # a record ends the poll at once
        return busy_poll_s(time.monotonic() - self._last_event)

    def _receive(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise WorkerFenced(f"consumer error: {err.str()}")
            if err.code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL:
                raise self._assignment_mismatch()
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
            carries=self.carriers.get(topic, ()),
            accepts=self.accepts,
        )
        for warning in job.header_warnings:
            self.log.warning("header_ignored", **log_fields(job), reason=warning)
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
            self.history.attempt(ps.job_type, ps.gen, ps.ledger_tp, job, "deduplicated", None)
            self._release_hold(ps, job)
            self._finish(ps, job.offset)
            self._next(ps, job)
            return
        crashed = self.crash_watch.verdict(ps, job)
        if crashed is not None:  # took its worker down worker.max_crashes times
            self._fail(ps, job, crashed, None)
            return
        gate = self.gates[job.job_type]
        if not gate.try_start(time.monotonic()):
            self._deferred.append((ps, job))  # rate limited or breaker open: started later
            return
        jd = self.jobs[job.job_type]
        slot: list[Any] = [None, None]  # [(fraction, message, n) from the handler, n recorded]
        self._progress[id(job)] = (ps.gen, job, slot)
        ctx = context_for(job, self.log, lambda f, m: slot.__setitem__(
            0, (f, m, next(self._progress_n))))
        func = jd.func
        if self.tracing is not None:
            func = self.tracing.wrap(func, jd.is_async, job)
        cfg = self.cfg[job.job_type]
        ps.running += 1
        self.log.info("started", **log_fields(job))
        self.crash_watch.launch(  # to the executor once its start is recorded
            ps,
            job,
            Task(
                func,
                (job.payload, ctx),
                jd.is_async,
                cfg.timeout_s,
                (ps.gen, job),
                gate if gate.breaker is not None else None,
                kind=job.job_type if cfg.concurrency else None,
                abandon_after_s=cfg.abandon_after_s,
            ),
        )

    def _withdraw(self, tps: set[TP] | None = None) -> None:
        """Jobs still waiting for a slot of their job type's concurrency have not started: like
        queued jobs they are dropped when their partitions go (None: all), offsets uncommitted."""
        for gen, job in self.executor.withdraw(lambda t: tps is None or t[1].tp in tps):
            ps = self.parts.get(job.tp)
            if ps is not None and ps.gen == gen:
                ps.running -= 1

    def _check_timeouts(self, now: float | None = None) -> None:
        # While stopping, the process (and every thread of it) ends soon: give up at once.
        for _gen, job in self.executor.check_timeouts(now, give_up=self._stopping):
            cfg = self.cfg[job.job_type]
            self.log.warning(
                "handler_overran",
                **log_fields(job),
                timeout_s=cfg.timeout_s,
                detail="its thread cannot be stopped: the job's outcome and its key's next job "
                f"wait for it to end (at most {cfg.abandon_after_s:g}s more)",
            )

    def _release_hold(self, ps: PartitionState, job: Job) -> None:
        if job.holds_partition:  # a failure retried in place again takes it anew
            job.holds_partition = False
            ps.held -= 1

    def _next(self, ps: PartitionState, job: Job) -> None:
        nxt = ps.queues.done(job.order_key)
        if nxt is not None:
            self._start(ps, nxt)

    def _drain_results(self, block_s: float = 0.0, discard: bool = False) -> None:
        results = self.executor.results
        if block_s:
            self.health.beat()  # a wait loop (revoke, shutdown) is the poll thread alive too
            self._check_timeouts()  # a hung handler must not hold a shutdown
            if results.empty():
                time.sleep(block_s)
        if not results.empty():
            self._last_event = time.monotonic()
        while not results.empty():
            (gen, job), error, duration, value = results.get()
            if isinstance(error, JobTimeout) and error.abandoned:
                self.metrics.abandoned.labels(job.job_type).inc()
                self.log.error(
                    "handler_abandoned",
                    **log_fields(job),
                    error=str(error),
                    detail="routed while its thread runs on: it may overlap with its retry or "
                    "its key's next job",
                )
            entry = self._progress.pop(id(job), None)
            if entry is not None:
                self._record_progress(*entry)
            ps = self.parts.get(job.tp)
            if ps is None or ps.gen != gen:
                continue  # its partition was revoked while it ran: the new owner redoes it
            ps.running -= 1
            if self._halted or discard:
                continue  # left unfinished: redone from the last commit, here or elsewhere
            if isinstance(error, NotAdmitted):
                self._deferred.append((ps, job))  # the breaker opened while it waited
                continue
            self._release_hold(ps, job)
            if error is None:
                self._succeed(ps, job, duration, value)
            else:
                failure = classify(error, self.cfg[job.job_type].permanent_errors)
                self._fail(ps, job, failure, duration)

    # -- outcomes --------------------------------------------------------------------------

    # -- periodic work ---------------------------------------------------------------------

    def _record_progress(self, gen: int, job: Job, slot: list[Any]) -> None:
        update = slot[0]
        if update is None or update[2] == slot[1] or self._broken:
            return
        slot[1] = update[2]
        ps = self.parts.get(job.tp)
        if ps is not None and ps.gen == gen:
            self.history.progress(ps.job_type, gen, ps.ledger_tp, job, update[0], update[1])

    def _tick(self) -> None:
        now = time.monotonic()
        flush_logs()  # buffered: one write per loop iteration, not one per log line
        while self._waiting and self._waiting[0][0] <= now:
            _, _, job = heapq.heappop(self._waiting)
            ps = self.parts.get(job.tp)
            if ps is not None:
                self._start(ps, job)
        if self._deferred:
            deferred, self._deferred = self._deferred, []
            for ps, job in deferred:
                if job.tp in self.parts:
                    self._start(ps, job)
        if (
            (now - self._last_commit) * 1000 >= self.ws.commit_interval_ms
            or self._finished_since_commit >= self.ws.commit_max_records
        ):
            self._commit(wait=False)
        self.crash_watch.step_alone(self._commit)
        # The rest needs no more than a few milliseconds' precision, and a busy loop iterates
        # a thousand times a second or more: its cost was a third of the loop's own.
        if now - self._last_tick < TICK_S:
            return
        self._last_tick = now
        self._check_timeouts(now)
        if self._progress and now - self._last_progress >= PROGRESS_S:
            self._last_progress = now
            for key, entry in list(self._progress.items()):
                ps = self.parts.get(entry[1].tp)
                if ps is None or ps.gen != entry[0]:
                    del self._progress[key]  # its partition went: no result will come for it
                else:
                    self._record_progress(*entry)
        for err in self.ledger.collect():
            self.log.warning("ledger_restore_failed", error=str(err))
        self._watch_protection(now)
        self._reconcile_pauses()
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
            self.health.reason = READY
        elif not self._joined:
            self.health.reason = NOT_JOINED
        elif self._brokers_down:
            bootstrap = self.settings.kafka.bootstrap_servers
            self.health.reason = NO_BROKER.format(bootstrap=bootstrap)
        else:
            self.health.reason = RESTORING

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
        resumed: list[TP] = []
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
                if not want:
                    resumed.append(ps.tp)
        if resumed and not self._brokers_down:
            self.fetch_wake.wake(resumed)

    def _set_paused(self, ps: PartitionState, paused: bool) -> None:
        tp = [TopicPartition(*ps.tp)]
        if paused:
            self.consumer.pause(tp)
        else:
            self.consumer.resume(tp)
        ps.paused = paused

    def _serve_producer(self, flush_s: float | None = None) -> None:
        """Serve delivery reports (and wait for them all with flush_s). librdkafka reports a
        fatal producer error (fenced: a thawed zombie) by raising it from one poll or flush:
        that breaks the interval, and _abort_interval decides between stopping and renewing."""
        try:
            if flush_s is None:
                if self.producer.poll(0):
                    self._last_event = time.monotonic()
            else:
                self.producer.flush(flush_s)
        except (KafkaException, SystemError) as raised:
            self._producer_failed(raised, "producer failed")
        if self.crash_watch.serve():
            self._last_event = time.monotonic()
        if self._marks_due:
            self._write_marks()

    def _commit(self, wait: bool = True) -> None:
        """Commit what finished; wait=False lets an at-least-once commit go on in the
        background (see consumers/commit.py)."""
        self._write_heads()
        if self.committer.in_txn:
            # commit_transaction makes every record produced so far visible, so the offsets
            # must cover them all: wait for their acknowledgements (which finish the source
            # offsets) before reading the offsets. Else a ledger or DLQ record could commit
            # while its source offset does not, and the next owner would redo the job.
            self._serve_producer(flush_s=self.committer.timeout_s)
        if self._broken:
            self._abort_interval()
            return
        self._advance_idle()
        offsets: dict[TP, int] = {}
        for tp, ps in self.parts.items():
            off = ps.offsets.commit_offset()
            if off is not None:
                offsets[tp] = off
        try:
            self.committer.commit(offsets, wait=wait)
        except CommitAborted as e:
            self._broken = str(e)
            self._abort_interval()
            return
        except ProducerFenced as e:
            self._broken = str(e)
            self._abort_interval(renew=True)
            return
        self.ledger.committed()
        self.history.committed()
        for tp, off in offsets.items():
            self.parts[tp].offsets.mark_committed(off)
        self._finished_since_commit = 0
        self._last_commit = time.monotonic()

    def _refresh_gauges(self) -> None:
        self.metrics.in_flight.set(sum(ps.in_flight for ps in self.parts.values()))
        self.metrics.ledger_entries.set(self.ledger.entries())
        self.ledger.expire()
        self.metrics.refresh_lag(self.consumer, list(self.parts))

    # -- shutdown --------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Stop fetching, let in-flight jobs finish within the grace period, commit, leave."""
        self.crash_watch.cancel(alone_only=True)
        for ps in self.parts.values():
            ps.queues.drain()
            self._set_paused(ps, True)
        self._withdraw()
        self._waiting.clear()
        self._deferred.clear()
        deadline = time.monotonic() + self.ws.shutdown_grace_s
        while any(ps.running for ps in self.parts.values()) and time.monotonic() < deadline:
            self._drain_results(block_s=0.05)
            self._serve_producer()
        self._serve_producer(flush_s=10)
        self._close(commit=True)
        self.log.info("stopped", abandoned=self.executor.abandoned)

    def _close(self, commit: bool) -> None:
        try:
            if commit:
                self._commit()
                self.crash_watch.release()
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


def busy_poll_s(quiet_s: float) -> float:
    """The poll's timeout while jobs run, after `quiet_s` with nothing to do. In a steady stream
    it stays at BUSY_POLL_S. A long handler is noticed at most 5% of its run time late (and at
    most 20 ms), and the loop wakes 50 times a second instead of 1,000 while it runs: with a
    fixed 1 ms poll, 64 handlers running for a minute cost 7% of a core."""
    return min(max(BUSY_POLL_S, quiet_s * BUSY_POLL_SHARE), BUSY_POLL_MAX_S)
