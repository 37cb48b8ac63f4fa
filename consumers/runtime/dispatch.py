"""Starting jobs: the ledger's dedup check, the crash verdict, the job type's gate (rate limit,
breaker), then the executor. Also the jobs waiting to start: strict-order retries in place
(due at a time) and jobs the gate deferred, and the key queue's next job once one ends."""

from __future__ import annotations

import heapq
import itertools
import queue
import time
from collections.abc import Callable, Iterable
from typing import Any

from jobstream.config.settings import JobTypeSettings
from jobstream.consumers.context import context_for, log_fields
from jobstream.consumers.errors import Failure, JobTimeout, NotAdmitted, classify, failure_of
from jobstream.consumers.jobs import JobDef
from jobstream.consumers.metrics import Metrics
from jobstream.consumers.runtime.assignment import Assignment
from jobstream.consumers.runtime.children import Children
from jobstream.consumers.runtime.crashes import CrashWatch
from jobstream.consumers.runtime.executor import Executor, Task
from jobstream.consumers.runtime.history import HistoryWriter
from jobstream.consumers.runtime.hook_defaults import Gates
from jobstream.consumers.runtime.hooks import Finished, Hooks, Refuse, Verdict
from jobstream.consumers.runtime.lane_gate import LaneGate
from jobstream.consumers.runtime.ledger import Ledger
from jobstream.consumers.runtime.parts import PartitionState
from jobstream.consumers.runtime.types import TP, Job, Outcome

PROGRESS_S = 0.5  # most one progress record per running job this often


class CancelCheck:
    """A task's gate that also refuses it, just before its handler would run, when the job was
    cancelled meanwhile (`jobs cancel` while it waited for a thread): it comes back NotAdmitted
    and start() skips it. Wraps the job type's own gate (the breaker), if any."""

    __slots__ = ("inner", "job_id", "ledger", "ledger_tp")

    def __init__(self, inner: Any, ledger: Ledger, ledger_tp: TP, job_id: str) -> None:
        self.inner, self.ledger, self.ledger_tp, self.job_id = inner, ledger, ledger_tp, job_id

    def admit(self) -> bool:
        if self.ledger.is_cancelled(self.ledger_tp, self.job_id):
            return False
        return self.inner is None or bool(self.inner.admit())

    def done(self, error: BaseException | None) -> None:
        if self.inner is not None:
            self.inner.done(error)


class Dispatcher:
    def __init__(
        self,
        jobs: dict[str, JobDef],
        cfg: dict[str, JobTypeSettings],
        assignment: Assignment,
        ledger: Ledger,
        executor: Executor,
        crash_watch: CrashWatch,
        metrics: Metrics,
        log: Any,
        hooks: Hooks,
        history: HistoryWriter,
        *,
        succeed: Callable[[PartitionState, Job, float, Any], None],
        fail: Callable[[PartitionState, Job, Failure, float | None], None],
        finish: Callable[[PartitionState, int], None],
        finish_cancelled: Callable[[PartitionState, Job], None],
        lanes: LaneGate | None = None,
    ) -> None:
        self.jobs = jobs
        self.cfg = cfg
        self.assignment = assignment
        self.ledger = ledger
        self.executor = executor
        self.crash_watch = crash_watch
        self.metrics = metrics
        self.log = log
        self.succeed = succeed
        self.fail = fail
        self.finish = finish
        self.finish_cancelled = finish_cancelled
        self.hooks = hooks
        self.history = history
        # Running jobs' latest progress update: [(fraction, message, n), n recorded], the first
        # set by the handler's thread (one list item assignment), recorded by the poll thread.
        self.progress: dict[int, tuple[int, Job, list[Any]]] = {}
        self._progress_n = itertools.count(1)
        self._last_progress = 0.0
        gates = hooks.find(Gates)
        self.gates = gates.gates if gates is not None else {}  # the breaker sees each result
        self.waiting: list[tuple[float, int, Job]] = []  # (due monotonic, seq, job) in place
        self.deferred: list[tuple[PartitionState, Job]] = []  # rate-limited, ready to start
        self._seq = 0
        # Jobs of job types with priority lanes wait there for a slot (lane_gate.py).
        self.lanes = lanes if lanes else None

    def start(self, ps: PartitionState, job: Job) -> None:
        """A job ready to start (its key's head): now, or in its lane's turn."""
        if self.lanes is not None and self.lanes.hold(ps, job):
            return
        self.begin(ps, job)

    def start_lanes(self) -> None:
        """Start lane jobs in the lanes' weighted order while handler slots are free."""
        lanes = self.lanes
        if lanes is None or not lanes.queued():
            return
        for ps, job in lanes.release(sum(p.running for p in self.assignment)):
            self.begin(ps, job)

    def begin(self, ps: PartitionState, job: Job) -> None:
        if self.ledger.is_done(ps.ledger_tp, job.job_id):
            self._ended(job)
            self.hooks.after_outcome(Finished(job, job.job_type, Outcome.DEDUPLICATED))
            self.history.attempt(ps, job, "deduplicated", None)
            ps.release_hold(job)
            self.finish(ps, job.offset)
            self.next(ps, job)
            return
        if self.ledger.is_cancelled(ps.ledger_tp, job.job_id):
            self.skip_cancelled(ps, job)
            return
        crashed = self.crash_watch.verdict(ps, job)
        if crashed is not None:  # took its worker down worker.max_crashes times
            self._ended(job)
            self.fail(ps, job, crashed, None)
            return
        verdict = self.hooks.before_start(job, time.monotonic())
        if verdict is Verdict.DEFER:
            self.deferred.append((ps, job))  # rate limited or breaker open: started later
            return
        if isinstance(verdict, Refuse):
            self._ended(job)
            self.fail(ps, job, failure_of(verdict.category, "Refused", verdict.reason), None)
            return
        jd = self.jobs[job.job_type]
        slot: list[Any] = [None, None]
        self.progress[id(job)] = (ps.gen, job, slot)
        n = self._progress_n
        interval = self.history.interval
        job.children = Children(job.job_id, job.headers, lambda: interval.publisher)
        ctx = context_for(job, self.log, lambda f, m: slot.__setitem__(0, (f, m, next(n))),
                          job.children)
        func = self.hooks.wrap(job, jd.func, jd.is_async)
        cfg = self.cfg[job.job_type]
        gate = self.gates.get(job.job_type)
        ps.running += 1
        self.hooks.after_start(job)
        self.crash_watch.launch(  # to the executor once its start is recorded
            ps,
            job,
            Task(
                func,
                (job.payload, ctx),
                jd.is_async,
                cfg.timeout_s,
                (ps.gen, job),
                CancelCheck(gate if gate is not None and gate.breaker is not None else None,
                            self.ledger, ps.ledger_tp, job.job_id),
                kind=job.job_type if cfg.concurrency else None,
                abandon_after_s=cfg.abandon_after_s,
            ),
        )

    def _ended(self, job: Job) -> None:
        """The job will not run (now): its tenant's slot (fair sharing) is free again."""
        if self.lanes is not None:
            self.lanes.done(job)

    def skip_cancelled(self, ps: PartitionState, job: Job) -> None:
        """A job `jobs cancel` cancelled: its handler does not run; counted, logged, one
        `cancelled` history record (and a batch member's `cancelled` record), and its offset
        finishes (committed with the interval)."""
        self._ended(job)
        self.hooks.after_outcome(Finished(job, job.job_type, Outcome.CANCELLED))
        self.history.attempt(ps, job, "cancelled", None)
        ps.release_hold(job)
        self.finish_cancelled(ps, job)
        self.next(ps, job)

    def next(self, ps: PartitionState, job: Job) -> None:
        nxt = ps.queues.done(job.order_key)
        if nxt is not None:
            self.start(ps, nxt)

    def retry_in_place(self, ps: PartitionState, job: Job, delay_s: float) -> None:
        job.attempt += 1
        self._seq += 1
        heapq.heappush(self.waiting, (time.monotonic() + delay_s, self._seq, job))
        job.holds_partition = True
        ps.held += 1

    def defer(self, ps: PartitionState, job: Job) -> None:
        self.deferred.append((ps, job))

    def start_due(self, now: float) -> None:
        """Retries in place whose backoff is over, and deferred jobs (the gate decides again)."""
        while self.waiting and self.waiting[0][0] <= now:
            _, _, job = heapq.heappop(self.waiting)
            ps = self.assignment.get(job.tp)
            if ps is not None:
                self.begin(ps, job)
        if self.deferred:
            deferred, self.deferred = self.deferred, []
            for ps, job in deferred:
                if job.tp in self.assignment:
                    self.begin(ps, job)

    def held_types(self, now: float) -> set[str]:
        """Job types whose partitions stay paused: jobs deferred, or the gate not accepting."""
        held = {ps.job_type for ps, _ in self.deferred}
        held.update(jt for jt, g in self.gates.items() if not g.accepting(now))
        return held

    def forget(self, tps: Iterable[TP] | None = None) -> None:
        """Drop what has not started (None: everything): queued, waiting, deferred, and jobs
        still waiting for a slot of their job type's concurrency. Their offsets stay
        uncommitted."""
        owned = None if tps is None else set(tps)
        if self.lanes is not None:
            self.lanes.forget(owned)
        for ps in self.assignment:
            if owned is None or ps.tp in owned:
                ps.queues.drain()
        for _, _, job in self.waiting:
            if owned is None or job.tp in owned:
                self._ended(job)
        for _, job in self.deferred:
            if owned is None or job.tp in owned:
                self._ended(job)
        if owned is None:
            self.waiting.clear()
            self.deferred.clear()
        else:
            self.waiting = [w for w in self.waiting if w[2].tp not in owned]
            self.deferred = [d for d in self.deferred if d[0].tp not in owned]
        for gen, job in self.executor.withdraw(lambda t: owned is None or t[1].tp in owned):
            self._ended(job)
            cur = self.assignment.current(job.tp, gen)
            if cur is not None:
                cur.running -= 1

    def check_timeouts(self, now: float | None = None, give_up: bool = False) -> None:
        for _gen, job in self.executor.check_timeouts(now, give_up=give_up):
            cfg = self.cfg[job.job_type]
            self.log.warning(
                "handler_overran",
                **log_fields(job),
                timeout_s=cfg.timeout_s,
                detail="its thread cannot be stopped: the job's outcome and its key's next job "
                f"wait for it to end (at most {cfg.abandon_after_s:g}s more)",
            )

    def _record_progress(self, gen: int, job: Job, slot: list[Any]) -> None:
        update = slot[0]
        if update is None or update[2] == slot[1]:
            return
        slot[1] = update[2]
        ps = self.assignment.current(job.tp, gen)
        if ps is not None:
            self.history.progress(ps, job, update[0], update[1])

    def record_progress(self, now: float) -> None:
        """Each running job's latest progress update, if new, into its history, at most every
        PROGRESS_S; jobs whose partition went are forgotten."""
        if not self.progress or now - self._last_progress < PROGRESS_S:
            return
        self._last_progress = now
        for key, (gen, job, slot) in list(self.progress.items()):
            if self.assignment.current(job.tp, gen) is None:
                del self.progress[key]  # revoked or rewound: no result will come for it
            else:
                self._record_progress(gen, job, slot)

    def collect(self, discard: bool = False) -> bool:
        """Route the results of handlers that ended (discard: drop them, their jobs redone from
        the last commit). True when there were any."""
        get = self.executor.results.get_nowait
        got = False
        while True:
            try:  # one call per result, not two (empty() then get())
                (gen, job), error, duration, value = get()
            except queue.Empty:
                return got
            got = True
            entry = self.progress.pop(id(job), None)
            if entry is not None:
                self._record_progress(*entry)
            if isinstance(error, JobTimeout) and error.abandoned:
                self.metrics.abandoned.labels(job.job_type).inc()
                self.log.error(
                    "handler_abandoned",
                    **log_fields(job),
                    error=str(error),
                    detail="routed while its thread runs on: it may overlap with its retry or "
                    "its key's next job",
                )
            ps = self.assignment.current(job.tp, gen)
            if ps is None or discard or not isinstance(error, NotAdmitted):
                self._ended(job)
            if ps is None:
                continue  # its partition was revoked while it ran: the new owner redoes it
            ps.running -= 1
            if discard:
                continue  # left unfinished: redone from the last commit, here or elsewhere
            if isinstance(error, NotAdmitted):
                self.deferred.append((ps, job))  # the breaker opened while it waited
                continue
            ps.release_hold(job)
            if error is None:
                self.succeed(ps, job, duration, value)
            else:
                failure = classify(error, self.cfg[job.job_type].permanent_errors)
                self.fail(ps, job, failure, duration)
