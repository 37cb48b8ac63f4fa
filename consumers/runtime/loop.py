"""The poll loop (poll -> decode -> dispatch -> outcome -> ledger -> commit), composed of parts
that own their state (docs/architecture.md). One thread owns the consumer, the producer and all
bookkeeping; handlers run in the executor and report back through a queue."""

from __future__ import annotations

import gc
import os
import socket
import time
import uuid
from collections.abc import Sequence

from jobstream.config.logging import flush_logs, get_logger
from jobstream.config.settings import JobTypeSettings, Settings
from jobstream.config.topics import JobTopics, job_topics
from jobstream.consumers.errors import DlqGuardTripped, ExitCode, WorkerError, WorkerFenced
from jobstream.consumers.health import Health
from jobstream.consumers.jobs import JobDef
from jobstream.consumers.metrics import Metrics
from jobstream.consumers.runtime import clients
from jobstream.consumers.runtime.assignment import Assignment
from jobstream.consumers.runtime.crashes import CrashWatch
from jobstream.consumers.runtime.deliver import Deliverer
from jobstream.consumers.runtime.dispatch import Dispatcher
from jobstream.consumers.runtime.executor import Executor
from jobstream.consumers.runtime.fetch_wake import FetchWaker
from jobstream.consumers.runtime.freeze import FreezeWatch
from jobstream.consumers.runtime.group import Group
from jobstream.consumers.runtime.history import HistoryWriter
from jobstream.consumers.runtime.hook_defaults import default_hooks
from jobstream.consumers.runtime.hooks import Hook, Hooks, registered
from jobstream.consumers.runtime.interval import Interval
from jobstream.consumers.runtime.lane_gate import LaneGate
from jobstream.consumers.runtime.ledger import Ledger
from jobstream.consumers.runtime.poll import Receiver, fetch, poll_timeout
from jobstream.consumers.runtime.recovery import Recovery
from jobstream.consumers.runtime.tick import Upkeep
from jobstream.consumers.runtime.types import TP
from jobstream.producers.publisher import Publisher
from jobstream.schemas.registry import SchemaRegistry

TICK_S = 0.005  # the loop's periodic checks (timeouts, pauses, protection, readiness)
GC_YOUNG_THRESHOLD = 10_000  # net allocations between young collections
_CPYTHON_YOUNG_THRESHOLD = 700


def tune_gc() -> None:
    """Raise the young generation's threshold, unless the job module set its own. Per job a
    few dozen objects come and go and some live until the job's commit: at CPython's 700 the
    young collections ran every few jobs and promoted the in-flight ones, so the middle
    generation's collections scanned thousands, about a tenth of the poll thread's time.
    Reference counting frees nearly all of it anyway."""
    young, *older = gc.get_threshold()
    if young == _CPYTHON_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, *older)


class Worker:
    # made in __init__ after the callbacks that use them
    assignment: Assignment
    dispatcher: Dispatcher
    upkeep: Upkeep

    def __init__(
        self,
        settings: Settings,
        jobs: dict[str, JobDef],
        *,
        group: str | None = None,
        registry: SchemaRegistry | None = None,
        metrics: Metrics | None = None,
        health: Health | None = None,
        make_consumer: clients.MakeConsumer = clients.make_consumer,
        make_producer: clients.MakeProducer = clients.make_producer,
        hooks: Sequence[Hook] = (),
    ) -> None:
        """hooks: added after the default hooks and those of add_hook (docs/hooks.md)."""
        self.settings = settings
        self.ws = ws = settings.worker
        self.jobs = jobs
        self.registry = registry or SchemaRegistry.from_dirs(settings.schema_dirs)
        self.metrics = metrics or Metrics()
        self.metrics.limit_job_types(jobs)  # label values: never a record's header
        self.health = health or Health()
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        # bound now (logging is configured by then): no lazy proxy on the hot path
        self.log = log = get_logger("jobstream.worker", worker=self.worker_id).bind()
        self.group = group or ws.group_id
        self.cfg: dict[str, JobTypeSettings] = {jt: settings.job(jt) for jt in jobs}
        self.topics: dict[str, JobTopics] = {jt: job_topics(jt, c) for jt, c in self.cfg.items()}
        self.accepts = {jt: c.accept for jt, c in self.cfg.items()}  # js-* and/or ce_* headers
        self.hooks = Hooks(
            [*default_hooks(settings, self.cfg, self.metrics, log), *registered(), *hooks]
        )
        self._stopping = False
        self._stop_signal: str | None = None
        self._halted = False  # results are no longer routed (the DLQ guard tripped)
        self._last_tick = self._last_event = 0.0

        client_error = lambda err: self.upkeep.client_error(err)  # noqa: E731
        self.consumer = make_consumer(clients.consumer_config(
            settings, self.group, client_error,
            lambda err, tps: self.assignment.commit_failed(err, tps, log),
        ))  # fmt: skip
        conf = clients.producer_config(settings, self.group, self.worker_id, client_error)
        self.interval = interval = Interval(ws, self.consumer, lambda: Publisher(
            settings, self.registry, producer_config=conf, make_producer=make_producer
        ), self.health, log)  # fmt: skip
        self.ledger = ledger = Ledger(settings, self.group)
        job_of_topic = {t: jt for jt, tt in self.topics.items() for t in tt.consumed}
        self.assignment = Assignment(self.consumer, self.ledger, self.metrics, job_of_topic)
        # Past the session the group has moved on: handler threads of a thawed zombie must not
        # start the jobs still queued here.
        self.freeze = FreezeWatch(ws.session_timeout_ms / 1000)
        limits = {jt: c.concurrency for jt, c in self.cfg.items() if c.concurrency}
        self.executor = Executor(ws.max_in_flight, alive=self.freeze.alive, limits=limits)
        self.health.watch(self.executor.loop_problem)
        self.crash_watch = CrashWatch(
            settings, self.worker_id, self.ledger, self.executor, self.assignment.parts, log
        )
        self.fetch_wake = FetchWaker(self.consumer)
        self.history = HistoryWriter(self.topics, self.cfg, self.worker_id, interval, ledger)
        self.deliver = Deliverer(
            ws, self.cfg, self.topics, self.worker_id, self.interval, self.assignment,
            self.ledger, self.hooks, self.freeze, self.history, log,
            next_job=lambda ps, job: self.dispatcher.next(ps, job),
            retry_in_place=lambda ps, job, delay: self.dispatcher.retry_in_place(ps, job, delay),
        )  # fmt: skip
        self.lanes = LaneGate(self.cfg, self.topics, self.assignment, self.metrics,
                              ws.max_in_flight, ws.max_in_flight + ws.max_buffered)
        self.dispatcher = Dispatcher(
            jobs, self.cfg, self.assignment, self.ledger, self.executor, self.crash_watch,
            self.metrics, log, self.hooks, self.history, succeed=self.deliver.succeed,
            fail=self.deliver.fail, finish=self.deliver.finish,
            finish_cancelled=self.deliver.finish_cancelled, lanes=self.lanes,
        )  # fmt: skip
        self.recovery = Recovery(
            ws, self.consumer, self.assignment, self.interval, self.dispatcher, self.ledger,
            self.crash_watch, self.freeze, self.health, self.metrics, log,
            discard_running=lambda grace_s: self._settle(None, grace_s, discard=True),
        )  # fmt: skip
        self.group_member = Group(
            settings, self.group, self.consumer, self.topics, self.assignment, self.interval,
            self.dispatcher, self.ledger, self.crash_watch, self.freeze, self.hooks, log,
            settle=lambda tps: self._settle(tps, ws.revoke_grace_s), commit=self._commit,
            rewind=self.recovery.rewind,
        )  # fmt: skip
        self.receiver = Receiver(
            self.topics, self.accepts, jobs.keys(), self.registry, self.assignment, self.ledger,
            self.metrics, log, self.hooks, submit=self.dispatcher.start, fail=self.deliver.fail,
            finish=self.deliver.finish, mismatch=self.group_member.mismatch,
        )  # fmt: skip
        self.upkeep = Upkeep(
            settings, self.consumer, self.assignment, self.ledger, self.metrics, self.health,
            lambda: self.interval.publisher, lambda: self.group_member.joined,
        )  # fmt: skip

    # The clients as of now (the interval renews a fenced producer).
    @property
    def publisher(self) -> Publisher:
        return self.interval.publisher

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        # What start-up made (modules, schemas, clients) lives as long as the process: out of
        # the collector's sight, a full collection scans only what came since. It scanned it
        # all before: 40-50 ms with the loop stopped, nothing collected, a few times a minute.
        gc.freeze()
        tune_gc()
        try:
            self.group_member.subscribe()
            fetched = True
            while not self._stopping:
                msgs = fetch(self.consumer, fetched, self._poll_timeout)
                fetched = bool(msgs)
                if msgs:
                    self._last_event = time.monotonic()
                self.health.beat()
                for msg in msgs:
                    self.receiver.receive(msg)
                self._drain_results()
                self.dispatcher.start_lanes()
                self._serve_producer()
                if self.interval.broken:
                    self.recovery.abort_interval()
                self._tick()
        except DlqGuardTripped as e:
            self.log.error("dlq_guard_tripped", reason=str(e))
            self._halted = True
            self._shutdown()  # what is finished (dead letters included) is committed
            return ExitCode.DLQ_GUARD
        except WorkerError as e:  # fenced, an assignment mismatch...: each names its code
            return self._fail_stop(e.event, e, e.exit_code)
        self.log.info("stopping", signal=self._stop_signal, grace_s=self.ws.shutdown_grace_s)
        self._shutdown()
        return ExitCode.STOPPED

    def _poll_timeout(self) -> float:
        # (a parent's outcome waiting for its children's acks is a job's end due)
        busy = self.assignment.busy() or bool(self.deliver.gated)
        acks = not busy and (len(self.interval.producer) > 0 or self.history.waiting)
        return poll_timeout(busy, time.monotonic() - self._last_event, acks)

    def _fail_stop(self, event: str, e: Exception, code: int) -> int:  # without a commit
        self.log.error(event, reason=str(e))
        self._close(commit=False)
        return code

    def stop(self, signal_name: str | None = None) -> None:
        """Ask the loop to stop (safe from a signal handler: it only sets flags)."""
        self._stop_signal = signal_name
        self._stopping = True

    def _drain_results(self, block_s: float = 0.0, discard: bool = False) -> None:
        if block_s:
            self.health.beat()  # a wait loop (revoke, shutdown) is the poll thread alive too
            self.dispatcher.check_timeouts(give_up=self._stopping)  # a hung one holds nothing
            if self.executor.results.empty():
                time.sleep(block_s)
        if self.dispatcher.collect(discard=discard or self._halted):
            self._last_event = time.monotonic()

    def _settle(self, tps: list[TP] | None, grace_s: float, discard: bool = False) -> None:
        """Let the running jobs of `tps` (None: all) end and route (or discard) their results."""
        deadline = time.monotonic() + grace_s
        while self.assignment.running(tps) and time.monotonic() < deadline:
            self._drain_results(block_s=0.05, discard=discard)
            if not discard:
                self._serve_producer()

    def _tick(self) -> None:
        now = time.monotonic()
        self.dispatcher.start_due(now)
        if self.interval.due(now):
            self._commit(wait=False)
        self.crash_watch.step_alone(self._commit)
        # The rest needs no more than a few milliseconds' precision, and a busy loop iterates
        # a thousand times a second or more: its cost was a third of the loop's own.
        if now - self._last_tick < TICK_S:
            return
        self._last_tick = now
        flush_logs()  # every few ms: per pass, at a steady rate, was a write(2) per job
        self.metrics.flush()
        self.dispatcher.check_timeouts(now, give_up=self._stopping)
        self.dispatcher.record_progress(now)
        for err in self.ledger.collect():
            self.log.warning("ledger_restore_failed", error=str(err))
        self.hooks.on_tick(now)
        wake = None if self.upkeep.brokers_down else self.fetch_wake
        held = self.dispatcher.held_types(now)
        self.lanes.reconcile()
        self.assignment.reconcile_pauses(self.ws, held, self._stopping, wake,
                                         self.lanes.wants_pause if self.lanes else None)
        self.upkeep.run(now)

    def _serve_producer(self, flush_s: float | None = None) -> None:
        """Serve delivery reports (and wait for them all with flush_s)."""
        if self.interval.serve(flush_s):
            self._last_event = time.monotonic()
        if self.crash_watch.serve():
            self._last_event = time.monotonic()
        if self.deliver.marks_due or self.deliver.outcomes_due:
            self.deliver.write_marks()
        self.history.flush(time.monotonic())  # gathered events, one record per stream

    def _commit(self, wait: bool = True) -> None:
        """Commit what finished; wait=False: an at-least-once commit goes on in the background."""
        interval = self.interval
        if interval.committer.in_txn:
            # The commit makes every record so far visible: wait for their acks (which finish
            # their source offsets) first, or a DLQ record could commit and its offset not.
            self._serve_producer(flush_s=interval.committer.timeout_s)
        # After those acks: an outcome they released (a parent's, its children acknowledged)
        # has its history event written here, and the chain head with it.
        self.history.write_heads()  # (nothing once the interval broke)
        if not interval.broken:
            self.group_member.advance_idle()
            offsets = self.assignment.commit_offsets()
            if interval.commit(offsets, wait=wait):
                self.ledger.committed()
                self.assignment.mark_committed(offsets)
                return
        self.recovery.abort_interval(renew=interval.renew)

    def _shutdown(self) -> None:
        """Stop fetching, let in-flight jobs finish within the grace period, commit, leave."""
        self.crash_watch.cancel(alone_only=True)
        self.assignment.pause_all()
        self.dispatcher.forget()
        self._settle(None, self.ws.shutdown_grace_s)
        self._serve_producer(flush_s=10)
        self._close(commit=True)
        self.log.info("stopped", abandoned=self.executor.abandoned)

    def _close(self, commit: bool) -> None:
        try:
            if commit:
                self._commit()
                self.crash_watch.release()
            else:
                self.interval.committer.abort()
        except WorkerFenced as e:
            self.log.error("final_commit_failed", reason=str(e))
        self.ledger.close()
        self.metrics.flush()
        try:
            self.consumer.close()  # leaves the group (revoke callback commits nothing new)
        except Exception as e:
            self.log.warning("close_failed", error=str(e))
        self.executor.shutdown()
