"""Scenario 3: a zombie. A busy worker is frozen (SIGSTOP) past the session timeout and the
transaction timeout while the others take its partitions over, then thawed (SIGCONT). In
transactional mode it must find itself fenced and exit non-zero (3), and nothing it wrote
after it froze may be visible to read_committed readers. The books still balance."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

from jobstream.schemas import wire
from tests.chaos.books import (
    Fleet,
    SinkTail,
    Workload,
    balanced,
    conclude,
    headers,
    mixed_jobs,
    publish,
    sized,
    wait_quiescent,
)
from tests.support.harness import Stack

WORKERS = 3
SESSION_TIMEOUT_S = 6  # tests.support.harness.make_stack
TRANSACTION_TIMEOUT_S = 10  # consumers/runtime/clients.py (producer transaction.timeout.ms)


def test_zombie_is_fenced_and_its_late_writes_stay_invisible(stack_factory) -> None:  # type: ignore[no-untyped-def]
    n = sized(4_000, 15_000, 40_000)
    zombies = sized(1, 2, 3)
    frozen_s = max(SESSION_TIMEOUT_S, TRANSACTION_TIMEOUT_S) + 5
    # Late writes stay invisible only to transactions (at least once, they are duplicates).
    stack: Stack = stack_factory(worker={"max_in_flight": 64, "mode": "transactional"})
    wl = Workload()
    started = time.monotonic()
    publish(stack, mixed_jobs(n, retry_every=50, poison_every=500, keys=600, seed=3), wl)
    fleet = Fleet(stack)
    for _ in range(WORKERS):
        fleet.start()
    sink = SinkTail(stack)
    frozen: list[dict[str, Any]] = []
    try:
        for i in range(zombies):
            target = len(wl.ok) * (i + 1) // (zombies + 2)
            fleet.wait(lambda: sink.poll() >= target, 120, f"{target} jobs run")  # noqa: B023
            # The victim: the live worker whose last run ended most recently (it is busy).
            alive = fleet.alive()
            victim = max(alive, key=lambda p: sink.last.get(p.pid, 0.0))
            fleet.expect(victim, 3)
            wid = fleet.worker_id(victim.pid)
            t_stop = time.time()
            victim.send_signal(signal.SIGSTOP)
            before = sink.poll()
            time.sleep(frozen_s)
            took_over = sink.poll() - before  # the others went on meanwhile
            t_cont = time.time()
            victim.send_signal(signal.SIGCONT)
            try:
                code: int | None = victim.wait(60)
            except Exception:
                code = None
            frozen.append({"pid": victim.pid, "worker": wid, "t_stop": t_stop,
                           "t_cont": t_cont, "exit": code, "others_ran": took_over})
            fleet.start()  # the replacement Kubernetes would start
    finally:
        for z in frozen:  # never leave a stopped process behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(z["pid"], signal.SIGCONT)
    quiet = wait_quiescent(stack, fleet, wl, timeout=sized(120, 300, 600))
    extra = []
    for z in frozen:
        if z["exit"] != 3:
            extra.append(f"zombie pid {z['pid']} exited with {z['exit']}, not 3 (fenced)")
    extra += late_writes(stack, frozen)
    books = conclude(
        "zombie", stack, fleet, wl, started,
        {"zombies": len(frozen), "frozen_s": frozen_s,
         "zombie_exits": [z["exit"] for z in frozen],
         # A frozen zombie's open transaction holds the ledger's last stable offset until
         # the broker aborts it (transaction timeout), so the new owner may wait that long.
         "others_ran_while_frozen": [z["others_ran"] for z in frozen],
         "zombie_runs_after_thaw": sum(
             1 for r in stack.runs() for z in frozen
             if r["pid"] == z["pid"] and r["start"] >= z["t_cont"])},
        quiet, extra=extra,
    )
    assert not books.violations, balanced(books)


def late_writes(stack: Stack, frozen: list[dict[str, Any]]) -> list[str]:
    """Records visible to read_committed readers that a zombie wrote after it froze: ledger
    entries (worker, finished_at) and retry/DLQ records (js-worker, js-failed-at)."""
    out = []
    by_worker = {z["worker"]: z["t_stop"] * 1000 for z in frozen if z["worker"]}
    for jid, entry in stack.ledger_entries():
        t = by_worker.get(entry["worker"])
        if t is not None and entry["finished_at"] > t:
            out.append(f"ledger entry of {jid} by zombie {entry['worker']} at "
                       f"{entry['finished_at']} (froze at {t:.0f}) is visible")
    for topic in [*stack.topics.retries, stack.topics.dlq]:
        for m in stack.read_topic(topic):
            h = headers(m)
            t = by_worker.get(h.get(wire.WORKER, ""))
            if t is not None and int(h.get(wire.FAILED_AT, "0")) > t:
                out.append(f"{topic} record of {h.get(wire.JOB_ID)} by zombie "
                           f"{h.get(wire.WORKER)} is visible")
    return out[:20]
