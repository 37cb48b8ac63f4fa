"""Scenario: cancels land while workers are SIGKILLed (issue 21). Three workers run a backlog
(slow handlers, a share failing once into a retry tier); a canceller cancels a tenth of the
jobs in batches (Publisher.cancel_many) while a random worker is SIGKILLed every few seconds
and restarted.

The books, besides the usual ones (tests/chaos/books.py): lost 0 (every job not cancelled
succeeds; every cancelled job is skipped by a worker, or had already run); no attempt of a
cancelled job starts after its cancel was acknowledged. A job whose attempt was already running
when the cancel came back (or had just started: the worker checks the cancel at start) is
counted apart, as `raced`: its current attempt ends as it ends."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from jobstream.producers.cancel import CancelResult
from jobstream.schemas import history
from tests.chaos.books import (
    Fleet,
    SinkTail,
    Workload,
    balanced,
    conclude,
    sized,
    wait_quiescent,
)
from tests.support.harness import Stack

WORKERS = 3


def _jobs(n: int, seed: int) -> list[tuple[dict[str, Any], str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        behaviour = "fail_until:2" if i % 5 == 4 else "sleep_ms:80"
        out.append(({"seq": i, "behaviour": behaviour}, f"k{i % 400}", "ok"))
    rng.shuffle(out)
    return out


def _attempts(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in stack.read_topic(stack.topics.history, timeout=60):
        try:
            recs = history.events(history.decode(m.value()))
        except history.HistoryError:
            continue
        for rec in recs:
            out.setdefault(rec.get("job_id", ""), []).append(rec)
    return out


def test_cancels_land_while_workers_are_sigkilled(stack_factory) -> None:  # type: ignore[no-untyped-def]
    n = sized(2_000, 10_000, 40_000)
    # max_crashes: this scenario kills at random, often while slow jobs run; a job caught in
    # three kills would be dead-lettered as a crash suspect (tests/chaos/test_sigkill.py is
    # where that is judged).
    stack: Stack = stack_factory(job={"retry_tiers": ["4s", "8s"]},
                                 worker={"max_in_flight": 4, "commit_interval_ms": 100,
                                         "max_crashes": 100})
    wl = Workload()
    started = time.monotonic()
    jobs = _jobs(n, seed=7)
    ids = stack.publish_many([(payload, key) for payload, key, _ in jobs])
    keys = {jid: key for jid, (_, key, _) in zip(ids, jobs, strict=True)}
    wl.published = len(ids)
    rng = random.Random(7)
    # From the later two thirds of the backlog: most are still waiting when their cancel comes.
    targets = rng.sample(ids[n // 3:], n // 10)
    wl.ok = set(ids) - set(targets)  # the targets are settled below
    fleet = Fleet(stack)
    for _ in range(WORKERS):
        fleet.start()

    acked: dict[str, float] = {}  # job id -> when its cancel came back (cancelled)
    final_before: set[str] = set()  # already succeeded when its cancel came: not cancelled
    unconfirmed: list[str] = []
    errors: list[str] = []
    batch_s: list[float] = []

    def canceller() -> None:
        try:
            with stack.publisher() as pub:
                for i in range(0, len(targets), 50):
                    batch = targets[i:i + 50]
                    t0 = time.monotonic()
                    results: list[CancelResult] = pub.cancel_many(
                        stack.job_type, [(j, keys[j]) for j in batch], confirm_timeout=3)
                    now = time.time()
                    batch_s.append(round(time.monotonic() - t0, 1))
                    for r in results:
                        if r.outcome == "cancelled":
                            acked[r.job_id] = now
                            if not r.confirmed:
                                unconfirmed.append(r.job_id)
                        elif r.outcome == "already_final":
                            final_before.add(r.job_id)
                        else:
                            errors.append(f"{r.job_id}: {r.message}")
        except Exception as e:  # the books say so
            errors.append(f"canceller: {type(e).__name__}: {e}")

    t = threading.Thread(target=canceller, name="canceller", daemon=True)
    t.start()
    kills, last_kill = 0, time.monotonic()
    sink = SinkTail(stack)
    interval = rng.uniform(3, 5)
    deadline = time.monotonic() + sized(120, 400, 900)
    while (t.is_alive() or not (wl.ok <= sink.ran)) and time.monotonic() < deadline:
        sink.poll()
        fleet.check()
        while len(fleet.alive()) < WORKERS:
            fleet.start()
        if time.monotonic() - last_kill >= interval and t.is_alive():
            fleet.kill(rng.choice(fleet.alive()))
            fleet.start()
            kills += 1
            last_kill, interval = time.monotonic(), rng.uniform(3, 5)
        time.sleep(0.2)
    t.join(60)
    wl.ok |= final_before  # done before its cancel: it must have succeeded
    cancelled = set(acked)

    # Every cancelled job is settled once a worker took it: skipped (a `cancelled` attempt
    # record) or run to success (it had started before the cancel).
    def settled() -> bool:
        hist = _attempts(stack)
        done = {j for j, _ in stack.ledger_entries(timeout=60)}
        return all(j in done or any(r.get("outcome") == "cancelled" for r in hist.get(j, []))
                   for j in cancelled)

    quiet = wait_quiescent(stack, fleet, wl, timeout=sized(120, 300, 600))
    fleet.wait(settled, sized(60, 120, 300), "every cancelled job skipped or done")
    hist = _attempts(stack)
    done = {j for j, _ in stack.ledger_entries(timeout=60)}
    late, raced = [], []
    for j in cancelled:
        ran = [r for r in hist.get(j, []) if r.get("event") == "attempt"
               and r.get("outcome") not in ("cancelled", "deduplicated")]
        after = [r for r in ran if r["started_at"] / 1000 > acked[j]]
        if after:
            late.append(f"{j}: attempt {after[0]['attempt']} started "
                        f"{after[0]['started_at'] / 1000 - acked[j]:.3f}s after the cancel")
        if j in done:
            raced.append(j)
    wl.ok |= set(raced)  # ran to success before its cancel took effect: on the books as ok
    extra = [*errors, *late]
    books = conclude("cancel", stack, fleet, wl, started,
                     {"sigkill": kills, "cancelled": len(cancelled), "raced": len(raced),
                      "already_final": len(final_before), "unconfirmed": len(unconfirmed),
                      "cancel_batches_s": batch_s},
                     quiet, extra=extra)
    assert kills >= sized(3, 6, 10), f"only {kills} kills"
    assert len(unconfirmed) < len(cancelled)  # confirmation works under kills, mostly
    assert len(cancelled) > len(targets) // 2, (len(cancelled), len(final_before))
    assert not books.violations, balanced(books)
