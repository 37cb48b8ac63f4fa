"""Scenario `schedules`: SIGKILL the owner of jobstream.schedules, again and again, while a
per-second schedule (catch_up all) fires; a graceful stop of a non-owner in between (a
rebalance). Then the schedule is paused (`jobstream schedules pause`) and the books are
taken: besides the usual ones (lost 0, nothing run after its recorded completion), every
slot from the first to the last fired is on T exactly once, and none ran before its slot."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

from tests.chaos.books import Fleet, Workload, balanced, conclude, sized, wait_quiescent
from tests.support.harness import Stack, run_cli
from tests.support.schedules import (
    add_schedules,
    events,
    every_second,
    gaps,
    is_owner,
    lateness_ms,
    published,
    ran,
    seconds,
    wait_owner,
)

WORKERS = 3


def test_schedules_owner_sigkilled_while_firing(stack_factory) -> None:  # type: ignore[no-untyped-def]
    run_s = sized(24, 60, 180)
    min_kills = sized(2, 4, 8)
    stack: Stack = stack_factory(job={"partitions": 2})
    name = f"chaos-{stack.settings.worker.group_id.rsplit('.', 1)[-1]}"
    add_schedules(stack, {name: every_second(stack, "all")})
    fleet = Fleet(stack)
    for _ in range(WORKERS):
        fleet.start()
    rng = random.Random(22)
    started = time.monotonic()
    fleet.wait(lambda: any(events(fleet.logs[p.pid], "schedule_fired") for p in fleet.alive()),
               60, "the first firing")
    kills, terms, next_kill = 0, 0, time.monotonic() + 4
    end = time.monotonic() + run_s
    while time.monotonic() < end or kills < min_kills:
        fleet.check()
        if time.monotonic() >= next_kill and kills < min_kills:
            alive = fleet.alive()
            owner_log = wait_owner(stack, [fleet.logs[p.pid] for p in alive], 60)
            owners = [p for p in alive if fleet.logs[p.pid] == owner_log]
            if owners:
                fleet.kill(owners[0])
                fleet.start()
                kills += 1
                next_kill = time.monotonic() + max(6.0, run_s / (min_kills + 1))
        if terms == 0 and kills == 1:  # a rebalance: a non-owner leaves, a new one joins
            others = [p for p in fleet.alive() if not is_owner(fleet.logs[p.pid])]
            if others:
                fleet.term(rng.choice(others))
                fleet.start()
                terms += 1
        if time.monotonic() > started + run_s + 120:
            break
        time.sleep(0.2)
    # Catch-up of the last kill's outage, then stop the schedule.
    last_kill = time.time()
    fleet.wait(lambda: max(seconds(list(ran(stack, name))), default=0) > last_kill, 60,
               "firing after the last kill")
    r = run_cli("schedules", "pause", name, env={"JOBSTREAM_CONFIG": str(stack.config_path)})
    assert r.returncode == 0, r.stderr
    time.sleep(2)
    on_t = published(stack, name)
    wl = Workload(ok={f"sched:{name}:{s}" for s in on_t}, published=len(on_t))
    quiet = wait_quiescent(stack, fleet, wl, timeout=sized(90, 180, 300))
    extra = []
    twice = sorted(s for s, c in on_t.items() if c > 1)
    if twice:
        extra.append(f"{len(twice)} slots published twice, e.g. {twice[:5]}")
    holes = gaps(list(on_t))
    if holes:
        extra.append(f"{len(holes)} holes in the slots fired: {holes[:5]}")
    early = sorted(s for s, rs in ran(stack, name).items()
                   if any(r["start"] < seconds([s])[0] for r in rs))
    if early:
        extra.append(f"{len(early)} slots run before their time, e.g. {early[:5]}")
    late = sorted(lateness_ms(stack, name).values())
    on_time = [v for v in late if v < 2000]  # the catch-ups after a kill wait for the takeover
    span = seconds(list(on_t))
    faults = {"sigkill": kills, "sigterm": terms, "slots": len(on_t),
              "span_s": span[-1] - span[0] + 1 if span else 0, "published_twice": len(twice),
              "holes": len(holes), "early": len(early),
              "on_time_ms_p50": on_time[len(on_time) // 2] if on_time else None,
              "on_time_ms_p99": on_time[int(len(on_time) * 0.99)] if on_time else None,
              "takeover_ms_max": late[-1] if late else None,
              "ended": datetime.now(UTC).strftime("%H:%M:%S")}
    books = conclude("schedules", stack, fleet, wl, started, faults, quiet, extra=extra)
    assert kills >= min_kills, f"only {kills} kills"
    assert len(on_t) >= run_s // 2, f"only {len(on_t)} slots fired in {run_s}s"
    assert not books.violations, balanced(books)
