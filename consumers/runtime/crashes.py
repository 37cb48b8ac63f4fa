"""Crash evidence: a handler that takes its process down (os._exit, a segfault, the OOM killer)
must not crash-loop the worker for ever with its partition stuck.

Per source partition one ledger key (`!started/<topic>/<partition>`) holds, in its latest value,
the offsets whose handlers run now (`live`) and the earlier runs of records whose worker died
(`deaths`). It is written by a producer of its own, outside any transaction: an aborted
transaction must not take the evidence with it. A job goes to the executor only once a value
listing it is acknowledged, so a handler that ends the process on its first line cannot outrun
its record. One write per partition is in flight at a time and the jobs that arrive meanwhile
go with the next one, so under load one write covers many jobs.

The next owner reads the latest value when it restores the ledger: what its writer had live
died with it. A record that took its worker down `worker.max_crashes` times is dead-lettered as
`crashed`, with the evidence, instead of run. A death is shared by everything that was running,
so the last allowed run is alone: the worker lets everything else end, commits, runs the job by
itself, and commits again before anything else starts; that death is the job's own. A graceful
end (revoke, shutdown) writes what is still running, so it counts nothing.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from jobstream.config.kafka import client_config
from jobstream.config.logging import flush_logs
from jobstream.config.settings import Settings
from jobstream.consumers.errors import Failure
from jobstream.consumers.runtime.clients import Reports
from jobstream.consumers.runtime.executor import Executor, Task
from jobstream.consumers.runtime.handler_exit import watched, where
from jobstream.consumers.runtime.ledger import Ledger, decode_started, encode_started, started_key
from jobstream.consumers.runtime.parts import PartitionState
from jobstream.consumers.runtime.types import TP, Category, Job
from jobstream.schemas import wire

Start = tuple[str, int]  # (worker id, ms since epoch it was last seen running)
RELEASE_FLUSH_S = 5.0
# Runs that ended are written at most this often when no job waits to start: a stale `live`
# entry only costs a shared death if the process dies before the next write, and in a stream
# the next start's write carries the change anyway (halves the writes under load).
ENDED_WRITE_S = 0.2


@dataclass(slots=True)
class _Held:
    """A job the worker started whose handler waits for its start to be recorded."""

    ps: PartitionState
    gen: int
    job: Job
    task: Task
    token: int = 0
    submitted: bool = False


@dataclass
class _Part:
    key: str
    ledger_tp: tuple[str, int]
    deaths: dict[int, tuple[Start, ...]]
    live: dict[int, int] = field(default_factory=dict)  # offset -> token of its run here
    waiting: list[_Held] = field(default_factory=list)  # for the next write
    sent: list[_Held] = field(default_factory=list)  # in the write in flight
    writing: bool = False
    written: float = 0.0  # monotonic time of the last write
    dirty: bool = False  # live or deaths changed since the last write


class CrashWatch:
    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        ledger: Ledger,
        executor: Executor,
        parts: dict[TP, PartitionState],
        log: Any,
    ) -> None:
        self.limit = settings.worker.max_crashes
        self.enabled = self.limit > 0
        self.alone_at = max(1, self.limit - 1)  # the last allowed run is alone
        self.worker_id = worker_id
        self.ledger = ledger
        self.executor = executor
        self.parts = parts  # the worker's own dict: which partition states are current
        self.log = log
        self._parts: dict[TP, _Part] = {}
        self._due: set[TP] = set()  # partitions with jobs waiting for a write, or changes
        # Runs that ended, appended by handler threads (deque: thread-safe, cheaper than a queue)
        self._ended: deque[tuple[TP, int, int]] = deque()
        self._token = 0
        self._alone: deque[_Held] = deque()
        self._alone_running: _Held | None = None
        self._write_error: str | None = None
        self._kafka = settings.kafka
        self.producer: Producer | None = None  # made on the first write
        self._reports = Reports()

    # -- the poll loop's calls -----------------------------------------------------------

    def verdict(self, ps: PartitionState, job: Job) -> Failure | None:
        """A crashed failure for a record that took its worker down max_crashes times."""
        if not self.enabled:
            return None
        deaths = self._part(ps).deaths.get(job.offset, ())
        if len(deaths) < self.limit:
            return None
        return crashed_failure(deaths, self.limit)

    def launch(self, ps: PartitionState, job: Job, task: Task) -> None:
        """Hand the task to the executor once its start is recorded (at once when off)."""
        if not self.enabled:
            self.executor.submit(task)
            return
        part = self._part(ps)
        held = _Held(ps, ps.gen, job, task)
        if len(part.deaths.get(job.offset, ())) >= self.alone_at:
            self._alone.append(held)
        else:
            part.waiting.append(held)
            self._due.add(ps.tp)

    def serve(self) -> bool:
        """Delivery reports (which start the jobs they recorded), ended runs, due writes; True
        when anything was acknowledged."""
        if not self.enabled:
            return False
        served = self.producer is not None and self._reports.serve(self.producer) > 0
        self._drain_ended()
        if not self._due:
            return served
        alone = self.isolating
        now = time.monotonic()
        for tp in list(self._due):
            part = self._parts.get(tp)
            if part is None or not (part.waiting or part.dirty):
                self._due.discard(tp)
            elif part.writing:
                continue
            elif (part.waiting and not alone) or now - part.written >= ENDED_WRITE_S:
                self._write(tp, part, [] if alone else part.waiting)
                if not part.waiting:
                    self._due.discard(tp)
        return served

    @property
    def isolating(self) -> bool:
        return bool(self._alone) or self._alone_running is not None

    def step_alone(self, commit: Callable[[], None]) -> None:
        """Drive the jobs that must run alone: wait for everything else to end, commit, run one,
        wait for its outcome, commit again."""
        if not self.isolating or not self._quiet():
            return
        if self._alone_running is not None:
            if not self._alone_running.submitted:
                return  # its start is being written
            done, self._alone_running = self._alone_running, None
            commit()  # its outcome is durable before anything else can take the process down
            self.log.info("ran_alone", **where(done.job))
            return
        first = self._alone[0]
        tp = first.job.tp
        part = self._parts.get(tp)
        if part is None or part.writing:
            return
        commit()  # what finished before is durable: a death now is the suspect's alone
        if not self._alone or self._alone[0] is not first:
            return  # the commit failed and rewound: the job was dropped, and comes again
        held = self._alone.popleft()
        self._alone_running = held
        self.log.warning(
            "running_alone",
            **where(held.job),
            deaths=len(part.deaths.get(held.job.offset, ())),
            max_crashes=self.limit,
        )
        flush_logs()  # the log is buffered, and this job may kill the process
        self._write(tp, part, [held])

    def connect(self) -> None:
        """Make the producer now: its first write would otherwise wait for the connection."""
        if self.enabled:
            self._producer()

    def cancel(self, tps: list[TP] | None = None, alone_only: bool = False) -> None:
        """Jobs not handed over yet are dropped: not started, they stay uncommitted and run
        again later; their partitions' running counts drop. alone_only (revoke, shutdown): the
        others are logged as started and get the grace like the running ones; only the jobs
        waiting to run alone are dropped, and the rest need not wait for them any more."""
        want = set(self._parts if tps is None else tps)
        for tp in set() if alone_only else want & set(self._parts):
            part = self._parts[tp]
            for h in part.waiting + part.sent:
                self._drop(h, part)
            part.waiting, part.sent = [], []
            self._due.add(tp)
        keep: deque[_Held] = deque()
        for h in self._alone:
            if h.job.tp in want:
                self._drop(h, self._parts.get(h.job.tp))
            else:
                keep.append(h)
        self._alone = keep
        if self._alone_running is not None and self._alone_running.job.tp in want:
            self._alone_running = None
        if alone_only and self.isolating:  # another partition's job runs alone: none of
            for tp in want & set(self._parts):  # these would be handed over in time
                part = self._parts[tp]
                for h in part.waiting:
                    self._drop(h, part)
                part.waiting = []

    def release(self, tps: list[TP] | None = None) -> None:
        """A graceful end of these partitions here (revoke, shutdown): nothing of theirs runs
        any more as far as the next owner is concerned (a handler past its grace was given up,
        not the cause of a death), so only the earlier deaths are written; then they are
        forgotten. Waits for the writes, so that the next owner reads them."""
        if not self.enabled:
            return
        self.cancel(tps)
        for tp in list(self._parts if tps is None else tps):
            part = self._parts.pop(tp, None)
            if part is not None and (part.dirty or part.live):
                part.live.clear()
                self._write(tp, part, [])
        if self.producer is not None:
            self.producer.flush(RELEASE_FLUSH_S)

    def forget(self, tps: list[TP]) -> None:
        """Partitions lost (another owner may write their evidence now): drop them unwritten."""
        self.cancel(tps)
        for tp in tps:
            self._parts.pop(tp, None)

    def pending(self) -> int:
        return 0 if self.producer is None else len(self.producer)

    # -- internals -----------------------------------------------------------------------

    def _part(self, ps: PartitionState) -> _Part:
        part = self._parts.get(ps.tp)
        if part is None:
            key = started_key(*ps.tp)
            raw = self.ledger.started(ps.ledger_tp, key)
            deaths = (decode_started(raw) if raw else None) or {}
            part = self._parts[ps.tp] = _Part(key, ps.ledger_tp, deaths)
            if deaths:
                self.log.warning(
                    "crash_evidence",
                    topic=ps.tp[0],
                    partition=ps.tp[1],
                    deaths={str(o): len(s) for o, s in sorted(deaths.items())},
                    max_crashes=self.limit,
                )
        return part

    def _drain_ended(self) -> None:
        ended = self._ended
        while ended:
            tp, offset, token = ended.popleft()
            part = self._parts.get(tp)
            if part is not None and part.live.get(offset) == token:
                del part.live[offset]
                part.deaths.pop(offset, None)  # it ran to its end: not a process killer
                part.dirty = True
                self._due.add(tp)

    def _producer(self) -> Producer:
        if self.producer is None:
            # Idempotent: several values of one key in flight (a release behind a write) stay
            # in order. linger 0: the handler waits for this record.
            self.producer = Producer(
                client_config(
                    self._kafka,
                    **{"linger.ms": 0, "enable.idempotence": True, "message.timeout.ms": 10_000},
                )
            )
        return self.producer

    def _write(self, tp: TP, part: _Part, moving: list[_Held]) -> None:
        self._drain_ended()  # a run that ended is not listed as running
        ps = self.parts.get(tp)
        floor = None if ps is None else ps.offsets.floor
        if floor is not None and part.deaths and min(part.deaths) < floor:
            # Finished since (recorded before the death, say): no next owner reads them again.
            part.deaths = {o: d for o, d in part.deaths.items() if o >= floor}
        if moving is part.waiting:
            part.waiting = []
        for h in moving:
            self._token += 1
            h.token = self._token
            part.live[h.job.offset] = h.token
            h.task.func = watched(h.task.func, h.task.is_async, self._ended, h.job, h.token)
        part.sent = moving
        part.writing = True
        part.written = time.monotonic()
        part.dirty = False
        value = encode_started(
            int(time.time() * 1000), self.worker_id, list(part.live), part.deaths
        )

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            part.writing = False
            if part.waiting or part.dirty:
                self._due.add(tp)
            sent, part.sent = part.sent, []
            if err is not None and self._write_error != err.str():
                # Run anyway: missing evidence costs a crash count, holding jobs costs the work.
                self._write_error = err.str()
                self.log.warning("crash_evidence_unwritten", error=err.str())
            for h in sent:
                if self.parts.get(h.job.tp) is h.ps and h.ps.gen == h.gen:
                    h.submitted = True
                    self.executor.submit(h.task)

        topic, partition = part.ledger_tp
        self._producer().produce(
            topic, value, part.key.encode(), partition=partition, on_delivery=on_delivery
        )

    def _drop(self, h: _Held, part: _Part | None) -> None:
        if self.parts.get(h.job.tp) is h.ps:
            h.ps.running -= 1
        if part is not None and h.token and part.live.get(h.job.offset) == h.token:
            del part.live[h.job.offset]
            part.dirty = True

    def _quiet(self) -> bool:
        """Nothing handed to the executor is still out (its result not yet drained)."""
        held = Counter(id(h.ps) for h in self._alone)
        for part in self._parts.values():
            held.update(id(h.ps) for h in part.waiting)
            held.update(id(h.ps) for h in part.sent)
        return all(ps.running == held.get(id(ps), 0) for ps in self.parts.values())


def crashed_failure(deaths: tuple[Start, ...], limit: int) -> Failure:
    """The dead letter's failure: how often, where and when the worker died under the job."""
    lines = [f"worker {w} died while running it (last seen running {_iso(at)})" for w, at in deaths]
    last_w, last_at = deaths[-1]
    message = (
        f"the worker process died {len(deaths)} times while this job ran (worker.max_crashes="
        f"{limit}), the last time running it alone: {last_w} at {_iso(last_at)}"
    )
    return Failure(
        Category.CRASHED,
        "jobstream.WorkerCrashed",
        wire.cut(message, wire.MAX_MESSAGE_BYTES),
        wire.cut("\n".join(lines), wire.MAX_STACK_BYTES),
    )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
