"""Scenario 4: a rebalance storm. Under load the fleet is scaled between 1 and 4 workers every
few seconds: new workers join, others are stopped gracefully (SIGTERM, what a scale-down does),
so partitions move all the time."""

from __future__ import annotations

import random
import subprocess
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
from tests.support.harness import Stack


def test_rebalance_storm_scaling_between_1_and_4_workers(stack_factory) -> None:  # type: ignore[no-untyped-def]
    n = sized(10_000, 25_000, 60_000)
    min_events = sized(3, 10, 20)  # short: the jobs run out within a few seconds
    stack: Stack = stack_factory(worker={"max_in_flight": 64})
    wl = Workload()
    started = time.monotonic()
    publish(stack, mixed_jobs(n, retry_every=100, poison_every=1000, keys=800, seed=4), wl)
    fleet = Fleet(stack)
    members: list[subprocess.Popen[bytes]] = [fleet.start() for _ in range(2)]
    rng = random.Random(4)
    sink = SinkTail(stack)
    sizes = [len(members)]
    segment = len(wl.ok) // (min_events + 1)
    last, at_last, interval = time.monotonic(), 0, rng.uniform(2, 4)
    for ran in sink.running(wl, sized(150, 600, 1500)):
        fleet.check()
        members = [p for p in members if p.poll() is None]  # an unexpected exit is recorded
        if not members:
            members.append(fleet.start())
        if time.monotonic() - last >= interval or ran - at_last >= segment:
            target = rng.choice([k for k in range(1, 5) if k != len(members)])
            while len(members) < target:
                members.append(fleet.start())
            while len(members) > target:
                fleet.term(members.pop(rng.randrange(len(members))))
            sizes.append(target)
            last, at_last, interval = time.monotonic(), ran, rng.uniform(2, 4)
    quiet = wait_quiescent(stack, fleet, wl, timeout=sized(120, 300, 600))
    events = len(sizes) - 1
    books = conclude(
        "rebalance_storm", stack, fleet, wl, started,
        {"scale_events": events, "sizes": "".join(map(str, sizes))[:80]}, quiet,
    )
    assert events >= min_events, f"only {events} scale events before the run ended"
    assert not books.violations, balanced(books)
