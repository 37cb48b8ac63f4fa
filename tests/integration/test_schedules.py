"""Recurring schedules end to end (issue 22) on the real broker: real workers fire a
per-second schedule; the owner SIGKILLed in between loses and doubles no slot; catch_up modes
after an outage; the rolling-deploy version rule with two workers holding different
definitions; the CLI's pause, resume, trigger and list."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import Stack, run_cli
from tests.support.schedules import (
    add_schedules,
    env_schedules,
    events,
    every_second,
    gaps,
    lateness_ms,
    published,
    ran,
    seconds,
    wait_owner,
)


@pytest.fixture
def stack(stack_factory: Any) -> Stack:
    s: Stack = stack_factory(job={"partitions": 2})
    return s


def _start(stack: Stack, name: str, **env: str) -> tuple[Any, Path]:
    p = stack.start_worker(log_name=f"{name}.log", **env)
    return p, stack.tmp / f"{name}.log"


def test_every_slot_once_across_a_sigkill_of_the_owner(stack: Stack, unique: str) -> None:
    """Two workers, a schedule every second (catch_up all) for ~20 s; the owner is SIGKILLed
    after ~8 s (its open transaction is aborted by the broker), the other takes over and
    catches up. Every slot from the first to the last is on T exactly once and ran."""
    name = f"tick-{unique}"
    add_schedules(stack, {name: every_second(stack, "all")})
    a, log_a = _start(stack, "a")
    b, log_b = _start(stack, "b")
    owner_log = wait_owner(stack, [log_a, log_b])
    time.sleep(1)
    owner_log = wait_owner(stack, [log_a, log_b])  # the same after a second: settled
    owner, other = (a, b) if owner_log == log_a else (b, a)
    time.sleep(8)
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    killed_at = time.time()
    time.sleep(12)
    other_log = log_b if owner_log == log_a else log_a
    stack.wait_for(lambda: bool(events(other_log, "schedule_fired")), 30, "the takeover")
    stack.wait_for(lambda: max(seconds(list(ran(stack, name))), default=0) > killed_at + 4,
                   40, "the survivor firing current slots")
    # Under load the survivor can lag a few seconds behind its own catch-up: wait (bounded) for
    # every slot due a second before now to have run, then stop it.
    cutoff = time.time() - 1
    stack.wait_for(lambda: {s for s in published(stack, name) if seconds([s])[0] < cutoff}
                   <= set(ran(stack, name)), 30, "every slot fired so far to run")
    stopped_at = cutoff + 1
    other.send_signal(signal.SIGTERM)
    assert other.wait(30) == 0
    on_t = published(stack, name)
    twice = {s: c for s, c in on_t.items() if c > 1}
    assert not twice, f"slots published twice: {twice}"
    assert not gaps(list(on_t)), f"slots never fired: {gaps(list(on_t))}"
    assert len(on_t) >= 18, f"only {len(on_t)} slots fired"
    late = lateness_ms(stack, name)
    on_time = sorted(v for s, v in late.items() if seconds([s])[0] < killed_at - 1)
    caught = sorted(v for s, v in late.items() if seconds([s])[0] >= killed_at - 1)
    print(f"\nslots {len(on_t)}; before the kill, slot -> on T ms p50 "
          f"{on_time[len(on_time) // 2]} max {on_time[-1]}; after it, the latest catch-up "
          f"{max(caught) if caught else 0} ms")
    assert min(late.values()) >= 0, "a job published before its slot"
    assert max(caught) > 3000, "the worker killed was not the owner (no takeover gap)"
    runs = ran(stack, name)
    # A slot fired while the worker was stopping waits on T for the next worker.
    before_stop = {s for s in on_t if seconds([s])[0] < stopped_at - 1}
    assert before_stop <= set(runs), f"fired, never ran: {sorted(before_stop - set(runs))[:5]}"
    assert set(runs) <= set(on_t)
    # The takeover fired the missed slots as a catch-up: the job of each slot, never early.
    for slot, rs in runs.items():
        due = seconds([slot])[0]
        assert all(r["start"] >= due for r in rs), f"{slot} ran before its slot"


def test_catch_up_modes_after_an_outage(stack: Stack, unique: str) -> None:
    """Three per-second schedules (latest, all, none); the one worker stops for ~10 s, then
    comes back: `all` fired every slot of the outage, `latest` one of the missed slots, `none`
    none of them (the slots within the 2 s grace fire as on time in every mode)."""
    names = {m: f"{m}-{unique}" for m in ("latest", "all", "none")}
    add_schedules(stack, {n: every_second(stack, m) for m, n in names.items()})
    w, log = _start(stack, "w1")
    wait_owner(stack, [log])
    time.sleep(4)
    w.send_signal(signal.SIGTERM)
    assert w.wait(30) == 0
    stopped = time.time()
    time.sleep(10)
    w2, log2 = _start(stack, "w2")
    wait_owner(stack, [log2])
    time.sleep(4)
    w2.send_signal(signal.SIGTERM)
    assert w2.wait(30) == 0
    fired = {m: published(stack, n) for m, n in names.items()}
    for m, c in fired.items():
        assert all(v == 1 for v in c.values()), f"{m}: a slot published twice: {c}"
    assert not gaps(list(fired["all"])), f"all: holes {gaps(list(fired['all']))}"
    holes = {m: gaps(list(c)) for m, c in fired.items()}
    # One hole each: `none` fired none of the missed slots, `latest` the newest of them (so its
    # hole ends a slot sooner; the three are planned in the same pass, with the same clock).
    assert len(holes["latest"]) == 1 and len(holes["none"]) == 1, holes
    (la, lb), (na, nb) = holes["latest"][0], holes["none"][0]
    assert la == na and lb == nb - 1 and nb - na >= 8, holes
    assert na <= stopped + 1
    missed = [e for e in events(log2, "schedule_fired") if e["missed"]]
    assert {e["schedule"] for e in missed} == {names["latest"], names["none"]}


def test_older_definitions_stop_firing(stack: Stack, unique: str) -> None:
    """The rolling-deploy rule: worker `old` fires definition v1 (payload seq 1); `new`
    (definition v2, seq 2) takes over and records v2 over v1; when ownership comes back to a
    worker with v1 it fires nothing and says so."""
    name = f"deploy-{unique}"
    v1 = env_schedules({name: every_second(stack, "latest", seq=1)})
    v2 = env_schedules({name: every_second(stack, "latest", seq=2)})
    old, log_old = _start(stack, "old", **v1)
    wait_owner(stack, [log_old])
    stack.wait_for(lambda: bool(events(log_old, "schedule_fired")), 20, "v1 firing")
    new, log_new = _start(stack, "new", **v2)
    time.sleep(3)
    old.send_signal(signal.SIGTERM)  # the rollout replaces the old pod
    assert old.wait(30) == 0
    wait_owner(stack, [log_new])
    stack.wait_for(lambda: bool(events(log_new, "schedule_fired")), 20, "v2 firing")
    old2, log_old2 = _start(stack, "old2", **v1)  # an old pod still around
    time.sleep(3)
    new.send_signal(signal.SIGTERM)
    assert new.wait(30) == 0
    wait_owner(stack, [log_old2])
    handed = time.time()
    stack.wait_for(lambda: bool(events(log_old2, "schedule_version_superseded")), 20,
                   "the old pod saying its definitions are older")
    time.sleep(3)
    old2.send_signal(signal.SIGTERM)
    assert old2.wait(30) == 0
    assert not events(log_old2, "schedule_fired"), "the old pod fired after a newer one"
    late_v1 = [r for rs in ran(stack, name).values() for r in rs
               if r["seq"] == 1 and r["start"] > handed]
    assert not late_v1, f"v1 jobs ran after v2 took over: {late_v1[:3]}"
    assert {r["seq"] for rs in ran(stack, name).values() for r in rs} == {1, 2}
    warn = events(log_old2, "schedule_version_superseded")[0]
    assert warn["schedule"] == name and "older" in warn["note"]


def test_cli_pause_resume_trigger_list(stack: Stack, unique: str) -> None:
    name = f"cli-{unique}"
    add_schedules(stack, {name: every_second(stack, "none")})
    env = {"JOBSTREAM_CONFIG": str(stack.config_path)}
    w, log = _start(stack, "w")
    wait_owner(stack, [log])
    stack.wait_for(lambda: len(ran(stack, name)) >= 2, 20, "firing")
    r = run_cli("schedules", "pause", name, env=env)
    assert r.returncode == 0, r.stderr
    time.sleep(1.5)
    paused_at = time.time()
    time.sleep(3)
    late = [s for s, rs in ran(stack, name).items() if rs[0]["start"] > paused_at]
    assert not late, f"fired while paused: {late}"
    listed = run_cli("schedules", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert f'"name": "{name}"' in listed.stdout and '"paused": true' in listed.stdout
    t = run_cli("schedules", "trigger", name, env=env)
    assert t.returncode == 0 and f"sched:{name}:manual:" in t.stdout, t.stderr
    stack.wait_for(lambda: any("manual" in r["job_id"] for r in stack.runs()), 20,
                   "the triggered job")
    r = run_cli("schedules", "resume", name, env=env)
    assert r.returncode == 0, r.stderr
    resumed_at = time.time()
    stack.wait_for(lambda: any(rs[0]["start"] > resumed_at for rs in ran(stack, name).values()),
                   20, "firing again after resume")
    bad = run_cli("schedules", "pause", "no-such-schedule", env=env)
    assert bad.returncode == 1 and "unknown schedule 'no-such-schedule'" in bad.stderr
    assert "Traceback" not in bad.stderr
    audit = run_cli("audit", "list", env=env)
    for cmd in ("schedules pause", "schedules resume", "schedules trigger"):
        assert cmd in audit.stdout
    w.send_signal(signal.SIGTERM)
    assert w.wait(30) == 0


@pytest.mark.parametrize("bad, says", [
    ({"cron": "0 25 * * *"}, "schedules.{name}.cron: cron '0 25 * * *': Bad hour"),
    ({"timezone": "Europe/Berlinn"}, "schedules.{name}.timezone: unknown time zone"),
    ({"payload": {"seq": "x"}}, "schedule '{name}': job type 'test.echo': payload.seq"),
])
def test_bad_schedule_stops_the_worker_naming_it(stack: Stack, unique: str,
                                                 bad: dict[str, Any], says: str) -> None:
    name = f"bad-{unique}"
    w, log = _start(stack, "w", **env_schedules({name: {**every_second(stack), **bad}}))
    assert w.wait(60) == 1
    text = log.read_text()
    assert says.format(name=name) in text, text[-2000:]
    assert "Traceback" not in text
