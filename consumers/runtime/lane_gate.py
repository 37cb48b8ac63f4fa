"""Priority lanes in the worker (docs/priorities.md): the jobs of a job type with lanes wait
here, one queue per lane, until a handler slot is free; then the lane picker
(consumers/runtime/lanes.py) says whose job starts. Jobs reach the queues in key order (only a
key's head is handed on, consumers/runtime/ordering.py), and each queue is first in first out,
so order holds within a lane and key. Also which lanes' partitions fetch (LaneFlow).

A job's lane is its topic's (T is `default`, T.priority.<lane> the others); a job read from a
retry tier, which the lanes share, is in the lane its js-priority header names."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from jobstream.config.lane_rules import DEFAULT_LANE
from jobstream.config.settings import JobTypeSettings
from jobstream.config.topics import JobTopics
from jobstream.consumers.metrics import Metrics
from jobstream.consumers.runtime.assignment import Assignment
from jobstream.consumers.runtime.lanes import FairQueue, LaneFlow, LanePicker
from jobstream.consumers.runtime.parts import PartitionState
from jobstream.consumers.runtime.types import TP, Job
from jobstream.schemas import wire

Waiting = tuple[PartitionState, Job, int]  # (state, job, its generation)


@dataclass
class _TypeLanes:
    job_type: str
    names: tuple[str, ...]
    picker: LanePicker
    flow: LaneFlow
    fair_by: str | None  # None: one tenant, first in first out
    limit: int | None  # max_in_flight_per_tenant
    has_lanes: bool  # False: fair sharing only, on T
    running: Counter[str] = field(default_factory=Counter)  # per tenant, with a limit
    queues: list[FairQueue[Waiting]] = field(default_factory=list)
    paused: list[bool] = field(default_factory=list)

    def tenant(self, job: Job) -> str:
        fair = self.fair_by
        if fair is None:
            return ""
        if fair == "key":
            return job.order_key.decode("utf-8", "replace")
        return job.headers.get(fair[len("header:"):], "")

    def index(self, name: str | None) -> int:
        try:
            return self.names.index(name or DEFAULT_LANE)
        except ValueError:  # a lane removed from the settings since: served as default
            return self.names.index(DEFAULT_LANE)


class LaneGate:
    def __init__(
        self,
        cfg: dict[str, JobTypeSettings],
        topics: dict[str, JobTopics],
        assignment: Assignment,
        metrics: Metrics,
        max_in_flight: int,
        buffer: int,
    ) -> None:
        self.assignment = assignment
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.types: dict[str, _TypeLanes] = {}
        self.lane_of_topic: dict[str, tuple[_TypeLanes, int]] = {}
        for jt, c in cfg.items():
            if not c.priorities and not c.fair_by:
                continue
            tl = _TypeLanes(jt, c.lanes, LanePicker(c.weights), LaneFlow(c.weights, buffer),
                            c.fair_by, c.max_in_flight_per_tenant, bool(c.priorities))
            tl.queues = [FairQueue(tl.running, tl.limit) for _ in c.lanes]
            tl.paused = [False] * len(c.lanes)
            self.types[jt] = tl
            for i, topic in enumerate(topics[jt].lanes or (topics[jt].main,)):
                self.lane_of_topic[topic] = (tl, i)
        self._started: dict[int, tuple[_TypeLanes, str]] = {}  # id(job) -> its tenant's count
        self._order = list(self.types.values())
        self._next_type = 0

    def __bool__(self) -> bool:
        return bool(self.types)

    def hold(self, ps: PartitionState, job: Job) -> bool:
        """Queue a job of a job type with lanes (True); False: it is not one, start it now."""
        tl = self.types.get(ps.job_type)
        if tl is None:
            return False
        got = self.lane_of_topic.get(ps.tp[0])
        lane = got[1] if got is not None else tl.index(job.headers.get(wire.PRIORITY))
        tl.queues[lane].append(tl.tenant(job), (ps, job, ps.gen))
        return True

    def queued(self) -> int:
        return sum(len(q) for tl in self._order for q in tl.queues)

    def release(self, running: int) -> Iterator[tuple[PartitionState, Job]]:
        """The queued jobs that may start now, in the lanes' weighted order: as many as there
        are free handler slots (`running`: jobs started and not finished)."""
        # A few more than the slots: a handler thread that ends takes the next job at once,
        # not once the poll thread has collected its result (a loop pass, ms under load); a
        # high job released later waits behind at most these few.
        free = self.max_in_flight + max(1, self.max_in_flight // 8) - running
        now_ms = int(time.time() * 1000)
        n = len(self._order)
        idle = 0
        while free > 0 and idle < n:
            tl = self._order[self._next_type % n]
            self._next_type += 1
            lane = tl.picker.pick([q.ready() for q in tl.queues])
            got = tl.queues[lane].pop() if lane is not None else None
            if lane is None or got is None:
                idle += 1
                continue
            idle = 0
            tenant, (ps, job, gen) = got
            if self.assignment.current(job.tp, gen) is None:
                continue  # revoked or rewound meanwhile: its new state fetches it again
            free -= 1
            if tl.limit is not None:
                tl.running[tenant] += 1
                self._started[id(job)] = (tl, tenant)
            self.metrics.lane_started(tl.job_type, tl.names[lane], job.enqueued_at_ms, now_ms)
            yield ps, job

    def done(self, job: Job) -> None:
        """A released job ended (ran, or never will: dropped, deduplicated): its tenant may
        start another. Called more than once for a job, it counts once."""
        got = self._started.pop(id(job), None)
        if got is not None:
            got[0].running[got[1]] -= 1

    def forget(self, tps: Iterable[TP] | None = None) -> None:
        owned = None if tps is None else set(tps)
        for tl in self._order:
            for q in tl.queues:
                q.keep(lambda w: owned is not None and w[0].tp not in owned)

    def reconcile(self) -> None:
        """Each lane's pause decision from what its partitions hold fetched (LaneFlow); read
        by wants_pause. Computed from the partitions' state every time, so a rebalance (new
        partitions start paused) or a restart finds the same decision again."""
        if not self.types:
            return
        counts = {id(tl): [0] * len(tl.names) for tl in self._order}
        for ps in self.assignment:
            got = self.lane_of_topic.get(ps.tp[0])
            if got is not None:
                counts[id(got[0])][got[1]] += ps.in_flight
        for tl in self._order:
            if not tl.has_lanes:
                continue
            buffered = counts[id(tl)]
            tl.paused = tl.flow.step(buffered)
            for i, name in enumerate(tl.names):
                self.metrics.lane_state(tl.job_type, name, buffered[i], len(tl.queues[i]),
                                        tl.paused[i])

    def wants_pause(self, ps: PartitionState) -> bool | None:
        """Whether a lane partition's lane should not fetch now; None for any other partition
        (the worker's whole-buffer rule applies to it)."""
        got = self.lane_of_topic.get(ps.tp[0])
        return None if got is None or not got[0].has_lanes else got[0].paused[got[1]]
