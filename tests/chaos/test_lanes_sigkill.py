"""Scenario: priority lanes under SIGKILL and rebalances. A backlog spread over three lanes
(mostly `low`), 3 workers, a random one SIGKILLed every few seconds and restarted (its
partitions move twice each time). The books: no job lost or run after its completion, the
poison in the DLQ once, and every lane topic committed to its end (a lane left paused for good
would never be)."""

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
    sized,
    wait_quiescent,
)
from tests.support.harness import Stack

WORKERS = 3
LANES = ("high", "default", "low")


def _publish(stack: Stack, n: int, wl: Workload) -> None:
    jobs = mixed_jobs(n, retry_every=100, poison_every=1000, keys=1000, seed=7)
    rng = random.Random(7)
    by_lane: dict[str, list[tuple[dict[str, object], str, str]]] = {k: [] for k in LANES}
    for job in jobs:  # 10 % high, 20 % default, 70 % low
        by_lane[rng.choices(LANES, weights=(1, 2, 7))[0]].append(job)
    for lane in ("low", "default", "high"):  # the low backlog first, as in the issue
        batch = by_lane[lane]
        ids = stack.publish_many([(p, k) for p, k, _ in batch], priority=lane)
        for jid, (_, _, outcome) in zip(ids, batch, strict=True):
            if outcome == "ok":
                wl.ok.add(jid)
            else:
                wl.poison[jid] = outcome
        wl.published += len(ids)


def _lanes_committed(stack: Stack) -> list[str]:
    out = []
    for topic in stack.topics.lanes:
        ends = stack.end_offsets(topic)
        committed = {p: max(o, 0) for p, o in stack.committed(topic).items()}
        if committed != ends:
            out.append(f"{topic} not committed to its end: {committed} of {ends}")
    return out


def test_lanes_lose_nothing_under_sigkill_and_rebalances(stack_factory) -> None:  # type: ignore[no-untyped-def]
    n = sized(6_000, 30_000, 100_000)
    min_kills = sized(3, 6, 10)
    stack: Stack = stack_factory(
        job={"priorities": list(LANES)}, worker={"max_in_flight": 64, "max_buffered": 300}
    )
    wl = Workload()
    started = time.monotonic()
    _publish(stack, n, wl)
    fleet = Fleet(stack)
    for _ in range(WORKERS):
        fleet.start()
    rng = random.Random(7)
    sink = SinkTail(stack)
    kills = 0
    segment, floor = len(wl.ok) // (2 * min_kills), max(50, len(wl.ok) // 100)
    last_kill, at_last, interval = time.monotonic(), 0, rng.uniform(2, 4)
    for ran in sink.running(wl, sized(150, 600, 1500)):
        fleet.check()
        while len(fleet.alive()) < WORKERS:
            fleet.start()
        progress = ran - at_last
        due = time.monotonic() - last_kill >= interval or progress >= segment
        # at most twice the kills asked for: on a loaded machine restarts are slow, and a kill
        # every 2-4 s would keep the fleet restarting to the end (147 s for the short scale)
        if due and progress >= floor and kills < 2 * min_kills:
            fleet.kill(rng.choice(fleet.alive()))
            fleet.start()
            kills += 1
            last_kill, at_last, interval = time.monotonic(), ran, rng.uniform(2, 4)
    quiet = wait_quiescent(stack, fleet, wl, timeout=sized(120, 300, 600))
    deadline = time.monotonic() + 30
    while _lanes_committed(stack) and time.monotonic() < deadline:
        time.sleep(1)
    books = conclude("lanes", stack, fleet, wl, started, {"sigkill": kills}, quiet,
                     extra=_lanes_committed(stack))
    assert kills >= min_kills, f"only {kills} kills before the run ended"
    assert not books.violations, balanced(books)
