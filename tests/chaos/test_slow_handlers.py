"""Scenario 5: slow and hung handlers mixed into the stream. The job type's timeout is small;
handlers that sleep past it (or hang for good) time out on every attempt and end in the DLQ
with category timeout, while the rest keeps flowing: no stall longer than a few seconds. A
timed-out job waits for its thread up to ABANDON_AFTER_S (the too-slow ones end within it,
the hung ones are abandoned then)."""

from __future__ import annotations

import itertools
import random
import time

from jobstream.schemas import wire
from tests.chaos.books import (
    Fleet,
    Workload,
    balanced,
    conclude,
    headers,
    sized,
    wait_quiescent,
)
from tests.support.harness import Stack

TIMEOUT_S = 1.0
ABANDON_AFTER_S = 3.0
MAX_ATTEMPTS = 2


def test_slow_and_hung_handlers_time_out_and_the_rest_flows(stack_factory) -> None:  # type: ignore[no-untyped-def]
    n = sized(2_000, 8_000, 20_000)
    stack: Stack = stack_factory(
        job={"timeout_s": TIMEOUT_S, "max_attempts": MAX_ATTEMPTS, "retry_tiers": ["1s"],
             "abandon_after_s": ABANDON_AFTER_S},
        worker={"max_in_flight": 32},
    )
    rng = random.Random(5)
    jobs: list[tuple[dict[str, object], str, str]] = []
    for i in range(n):
        r = rng.random()
        if r < 0.004:
            behaviour, outcome = "hang", "timeout"  # never returns
        elif r < 0.008:
            behaviour, outcome = f"sleep_ms:{rng.randint(1500, 2500)}", "timeout"  # too slow
        elif r < 0.06:
            behaviour, outcome = f"sleep_ms:{rng.randint(20, 600)}", "ok"  # slow but in time
        else:
            behaviour, outcome = "ok", "ok"
        jobs.append(({"seq": i, "behaviour": behaviour}, f"k{i % 400}", outcome))
    wl = Workload()
    started = time.monotonic()
    ids = stack.publish_many([(p, k) for p, k, _ in jobs])
    for jid, (_, _, outcome) in zip(ids, jobs, strict=True):
        if outcome == "ok":
            wl.ok.add(jid)
        else:
            wl.poison[jid] = outcome
    wl.published = len(ids)
    fleet = Fleet(stack)
    for _ in range(2):
        fleet.start()
    quiet = wait_quiescent(stack, fleet, wl, timeout=sized(120, 300, 600))
    # The rest kept flowing: the longest pause between two finished ok runs, from the first
    # to the last (a hung handler holding the pool would show as a long gap).
    ends = sorted(r["end"] for r in stack.runs() if r["job_id"] in wl.ok)
    longest_gap = max((b - a for a, b in itertools.pairwise(ends)), default=0.0)
    extra = []
    if longest_gap > 5.0:
        extra.append(f"ok jobs stalled for {longest_gap:.1f}s")
    wrong_attempt = [
        headers(m).get(wire.JOB_ID) for m in stack.read_topic(stack.topics.dlq)
        if headers(m).get(wire.ATTEMPT) != str(MAX_ATTEMPTS)
    ]
    if wrong_attempt:
        extra.append(f"{len(wrong_attempt)} timeouts dead-lettered before attempt "
                     f"{MAX_ATTEMPTS}: {wrong_attempt[:5]}")
    books = conclude(
        "slow_handlers", stack, fleet, wl, started,
        {"hung": sum(1 for p, _, _ in jobs if p["behaviour"] == "hang"),
         "too_slow": sum(1 for p, _, o in jobs if o == "timeout" and p["behaviour"] != "hang"),
         "slow_ok": sum(1 for p, _, o in jobs if o == "ok" and p["behaviour"] != "ok"),
         "longest_gap_s": round(longest_gap, 2)},
        quiet, extra=extra,
    )
    assert not books.violations, balanced(books)
