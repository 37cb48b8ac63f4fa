"""Scenario 1: SIGKILL a random worker every few seconds while 3 workers run a backlog,
restarting each one killed (what Kubernetes does to a crashed pod). Besides the usual books, the
job history must be whole: one record per finished attempt, none of an aborted interval, and
every chain verified (tests/chaos/history_books.py; transactional mode)."""

from __future__ import annotations

import random
import time

from tests.chaos.books import (
    Fleet,
    SinkTail,
    Workload,
    balanced,
    conclude,
    mixed_jobs,
    publish,
    sized,
    wait_quiescent,
)
from tests.chaos.history_books import history_violations
from tests.support.harness import Stack

WORKERS = 3


def test_sigkill_random_workers_every_few_seconds(stack_factory) -> None:  # type: ignore[no-untyped-def]
    n = sized(6_000, 30_000, 100_000)
    min_kills = sized(3, 6, 10)
    stack: Stack = stack_factory(worker={"max_in_flight": 128})
    wl = Workload()
    started = time.monotonic()
    publish(stack, mixed_jobs(n, retry_every=100, poison_every=1000, keys=1000, seed=1), wl)
    fleet = Fleet(stack)
    for _ in range(WORKERS):
        fleet.start()
    rng = random.Random(1)
    sink = SinkTail(stack)
    kills = 0
    # A kill every 2-5 s, or sooner once a 1/(2 * min_kills) share of the jobs ran since the
    # last one, so a fast run still gets its kills in (with 1/(min_kills+1), a short run done in
    # 5 s got 2 of its 3: its first kill, on time, came late in the stream); never before 1%
    # more jobs ran (mid-stream).
    segment, floor = len(wl.ok) // (2 * min_kills), max(50, len(wl.ok) // 100)
    last_kill, at_last = time.monotonic(), 0
    interval = rng.uniform(2, 5)
    for ran in sink.running(wl, sized(150, 600, 1500)):
        fleet.check()
        while len(fleet.alive()) < WORKERS:  # an unexpected exit is recorded; keep the size
            fleet.start()
        progress = ran - at_last
        due = time.monotonic() - last_kill >= interval or progress >= segment
        if due and progress >= floor:
            fleet.kill(rng.choice(fleet.alive()))
            fleet.start()
            kills += 1
            last_kill, at_last, interval = time.monotonic(), ran, rng.uniform(2, 5)
    quiet = wait_quiescent(stack, fleet, wl, timeout=sized(120, 300, 600))
    books = conclude("sigkill", stack, fleet, wl, started, {"sigkill": kills}, quiet,
                     extra=_history(stack, wl))
    assert kills >= min_kills, f"only {kills} kills before the run ended"
    assert not books.violations, balanced(books)


def _history(stack: Stack, wl: Workload) -> list[str]:
    """Read once quiescent (every job on the books, so every record committed), before
    conclude() stops the fleet and audits this with the rest."""
    if stack.settings.worker.mode.value != "transactional":
        return []
    return history_violations(stack, wl)
