"""Scenario `batches`: batches of members under SIGKILLs and rebalances. 3 workers run the
members of many batches (every 10th member dead-lettered by design); a random worker is
SIGKILLed every 2-3.5 s and restarted, and a fourth joins and leaves, moving the partitions of
the job topics and of jobstream.batches (the batch owners) around.
The books, besides the usual ones (0 lost members, nothing run after its recorded
completion): every batch's callback committed exactly once on the topic and run with the
right counts, and every batch closed with those counts on jobstream.batches."""

from __future__ import annotations

import random
import subprocess
import time
from collections import Counter

from jobstream.consumers.batches.topic import read_batch
from jobstream.schemas import batch_record as br
from jobstream.schemas import wire
from tests.chaos.books import Fleet, SinkTail, Workload, balanced, conclude, sized, wait_quiescent
from tests.support.harness import Stack

WORKERS = 3
JT = "test.batch"


def test_batches_call_back_once_under_sigkill_and_rebalance(stack_factory) -> None:  # type: ignore[no-untyped-def]
    batches = sized(15, 100, 200)
    members = sized(50, 100, 100)
    min_faults = sized(3, 8, 16)
    max_faults = sized(6, 16, 32)
    sleep_ms = sized(100, 50, 50)  # members take long enough for the faults to land mid-run
    stack: Stack = stack_factory(job_type=JT, worker={"max_in_flight": sized(4, 4, 8),
                                                      "mode": "transactional"},
                                 job={"retry_tiers": ["1s"], "max_attempts": 2})
    wl = Workload()
    started = time.monotonic()
    rng = random.Random(29)
    ids: list[str] = []
    dead_of: dict[str, int] = {}
    with stack.publisher() as pub:
        for b in range(batches):
            payloads = [{"seq": b * 1000 + i,
                         "behaviour": "permanent" if i % 10 == 3 else f"sleep_ms:{sleep_ms}"}
                        for i in range(members)]
            bid = pub.batch(JT, payloads, on_complete=(JT, {"seq": -b, "behaviour": "callback"}))
            ids.append(bid)
            dead_of[bid] = 0
            for i, p in enumerate(payloads):
                mid = br.member_id(bid, i)
                if p["behaviour"] == "permanent":
                    wl.poison[mid] = "permanent"
                    dead_of[bid] += 1
                else:
                    wl.ok.add(mid)
            wl.ok.add(br.callback_id(bid))
    wl.published = batches * (members + 1)
    fleet = Fleet(stack, app="tests.apps.batches")
    for _ in range(WORKERS):
        fleet.start()
    extra_member: subprocess.Popen[bytes] | None = None
    sink = SinkTail(stack)
    kills = scale = 0
    last, interval = time.monotonic(), rng.uniform(2, 3.5)
    for _ran in sink.running(wl, sized(120, 600, 1500)):
        fleet.check()
        if time.monotonic() - last < interval or kills + scale >= max_faults:
            continue
        if (kills + scale) % 3 == 2:  # a rebalance: a fourth worker joins, or leaves
            if extra_member is None or extra_member.poll() is not None:
                extra_member = fleet.start()
            else:
                fleet.term(extra_member)
                extra_member = None
            scale += 1
        else:
            victims = [p for p in fleet.alive() if p is not extra_member]
            if victims:
                fleet.kill(rng.choice(victims))
                fleet.start()
                kills += 1
        last, interval = time.monotonic(), rng.uniform(2, 3.5)
        while len([p for p in fleet.alive() if p is not extra_member]) < WORKERS:
            fleet.start()
    quiet = wait_quiescent(stack, fleet, wl, timeout=sized(90, 300, 600))
    callbacks = {br.callback_id(b): b for b in ids}
    records: Counter[str] = Counter()
    for m in stack.read_topic(stack.topics.main, timeout=60):
        jid = wire.decode_headers(m.headers()).get(wire.JOB_ID, "")
        if jid in callbacks:
            records[jid] += 1
    runs = [r for r in stack.runs() if r["behaviour"] == "callback"]
    wrong = []
    for r in runs:
        b = r["batch_id"]
        want = (members, members - dead_of.get(b, -1), dead_of.get(b, -1), 0)
        if (r["total"], r["succeeded"], r["dead_lettered"], r["cancelled"]) != want:
            wrong.append((b, r))
    bad_books = []
    for b in ids:
        e = read_batch(stack.settings, b)
        want = {"succeeded": members - dead_of[b], "dead_lettered": dead_of[b], "cancelled": 0}
        if e is None or e.batch is None or e.batch.state != "closed" or e.counts() != want:
            bad_books.append(b)
    extra = []
    missing = sorted(set(callbacks) - set(records))
    twice = sorted(j for j, c in records.items() if c > 1)
    if missing:
        extra.append(f"{len(missing)} callbacks never published, e.g. {missing[:5]}")
    if twice:
        extra.append(f"{len(twice)} callbacks committed more than once, e.g. {twice[:5]}")
    if wrong:
        extra.append(f"{len(wrong)} callbacks ran with wrong counts, e.g. {wrong[:2]}")
    if bad_books:
        extra.append(f"{len(bad_books)} batches not closed with the right counts, e.g. "
                     f"{bad_books[:3]}")
    faults = {"sigkill": kills, "rebalances": scale, "batches": batches,
              "members": batches * members, "callbacks": len(records),
              "callback_repeats": len(twice)}
    books = conclude("batches", stack, fleet, wl, started, faults, quiet, extra=extra)
    assert kills + scale >= min_faults, f"only {kills} kills and {scale} rebalances"
    assert not books.violations, balanced(books)
