"""Scenario `scheduler`: SIGKILL the workers while delayed jobs come due. Two workers own the
T.scheduled partitions; the owner of scheduled partitions is killed mid-dispatch (several
times, each restarted), the survivor or the restart takes over. The books, besides the usual
ones (lost 0, nothing run after its recorded completion): each job id dispatched to T exactly
once (T holds one record per id), none run before its due time.

The owners write snapshots of their pending index every few dispatches
(scheduler_snapshot_changes 50), so the owner after a kill restores from a snapshot the killed
one wrote mid-dispatch, plus the records after it: the books cover that path too, and the
scenario checks it was taken."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from jobstream.schemas import wire
from tests.chaos.books import Fleet, SinkTail, Workload, balanced, conclude, sized, wait_quiescent
from tests.support.harness import Stack

WORKERS = 2


def test_scheduler_sigkill_while_delayed_jobs_come_due(stack_factory) -> None:  # type: ignore[no-untyped-def]
    n = sized(1_500, 6_000, 20_000)
    spread_s = sized(12, 30, 90)
    min_kills = sized(2, 4, 8)
    stack: Stack = stack_factory(worker={"max_in_flight": 128, "scheduler_snapshot_changes": 50,
                                         "scheduler_snapshot_every_s": 0.5})
    fleet = Fleet(stack)
    for _ in range(WORKERS):
        fleet.start()
    time.sleep(5)  # both joined and restored (empty) their scheduled partitions
    wl, due = Workload(), {}
    lead_s = 6.0
    started = time.monotonic()
    rng = random.Random(22)
    base = datetime.now(UTC) + timedelta(seconds=lead_s)
    with stack.publisher() as pub:
        for i in range(n):
            when = base + timedelta(seconds=rng.uniform(0, spread_s))
            jid = pub.publish_async(stack.job_type, {"seq": i}, key=f"k{i % 500}", run_at=when)
            due[jid] = int(when.timestamp() * 1000)
            wl.ok.add(jid)
    wl.published = n
    sink = SinkTail(stack)
    kills, next_kill = 0, time.monotonic() + lead_s + 1.5
    for ran in sink.running(wl, sized(150, 400, 900)):
        fleet.check()
        # Mid-dispatch: jobs are coming due; kill one of the owners, restart it.
        if kills < min_kills and time.monotonic() >= next_kill and 0 < ran < n:
            fleet.kill(rng.choice(fleet.alive()))
            fleet.start()
            kills += 1
            next_kill = time.monotonic() + max(2.0, spread_s / (min_kills + 1))
        while len(fleet.alive()) < WORKERS:
            fleet.start()
    quiet = wait_quiescent(stack, fleet, wl, timeout=sized(120, 300, 600))
    dispatched = Counter(wire.decode_headers(m.headers()).get(wire.JOB_ID)
                         for m in stack.read_topic(stack.topics.main, timeout=60))
    twice = sorted(j for j, c in dispatched.items() if c > 1)
    never = sorted(j for j in due if j not in dispatched)
    early = sorted(r["job_id"] for r in stack.runs()
                   if r["job_id"] in due and r["start"] * 1000 < due[r["job_id"]])
    extra = []
    if twice:
        extra.append(f"{len(twice)} jobs dispatched twice, e.g. {twice[:5]}")
    if never:
        extra.append(f"{len(never)} jobs never dispatched, e.g. {never[:5]}")
    if early:
        extra.append(f"{len(early)} jobs run before their due time, e.g. {early[:5]}")
    faults = {"sigkill": kills, "dispatched_twice": len(twice), "early": len(early)}
    books = conclude("scheduler", stack, fleet, wl, started, faults, quiet, extra=extra)
    assert kills >= min_kills, f"only {kills} kills before the run ended"
    loaded = sum(log.read_text(errors="replace").count('"scheduler_snapshot_loaded"')
                 for log in fleet.logs.values() if log.exists())
    assert loaded, "no owner restored from a snapshot: the scenario missed that path"
    assert not books.violations, balanced(books)
