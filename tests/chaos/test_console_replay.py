"""Replaying dead letters from the operator console while workers are SIGKILLed: the fixed
handler runs every replayed job to a recorded success exactly once (lost 0), and replaying
again from the console, by filter (saved progress: nothing matched) and by selection (the
ledger skips what already succeeded), runs nothing twice."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from typing import Any

from tests.chaos.books import SCALE, Books, Fleet, SinkTail, record, sized
from tests.console.support import TOKEN, add_ui_settings, console_server, free_port_from, get, post
from tests.support.harness import Stack, runs_after_completion

CONSOLE_PORTS = range(8413, 8415)
BEARER = {"authorization": f"Bearer {TOKEN}"}


def _csrf(url: str) -> str:
    _, body, _ = get(url, BEARER)
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', body)
    assert m, body[:500]
    return m.group(1)


def _replay(url: str, jt: str, fields: list[tuple[str, str]]) -> tuple[int, str]:
    return post(f"{url}/dlq/{jt}/replay",
                [("csrf", _csrf(f"{url}/dlq/{jt}")), *fields], BEARER)


def _count(body: str, name: str) -> int:
    m = re.search(rf'id="{name}">(\d+)<', body)
    assert m, body[body.find("<main>"):][:800]
    return int(m.group(1))


def test_console_replay_while_workers_are_killed(stack_factory: Any) -> None:
    n = sized(400, 2_000, 10_000)
    stack: Stack = stack_factory(worker={"max_in_flight": 32})
    add_ui_settings(stack)
    ids = stack.publish_many([({"seq": i, "behaviour": "permanent"}, f"k{i % 97}")
                              for i in range(n)])
    fleet = Fleet(stack)
    fleet.start()
    fleet.wait(lambda: len(stack.read_topic(stack.topics.dlq)) >= n, 120, f"{n} dead letters")
    fleet.stop_all()
    started = time.monotonic()
    for _ in range(2):  # the fix is deployed
        fleet.start(JOBSTREAM_TEST_FIXED="1")
    sink = SinkTail(stack)
    kills = 0
    jt = stack.job_type
    with console_server(stack, free_port_from(CONSOLE_PORTS)) as url:
        status, body = _replay(url, jt, [("mode", "filtered")])  # the confirm step: a dry run
        assert status == 200 and _count(body, "dry-run-count") == n, body[:300]
        result: dict[str, Any] = {}
        sending = threading.Thread(target=lambda: result.update(
            zip(("status", "body"), _replay(url, jt, [("mode", "filtered"), ("confirm", "yes")]),
                strict=True)))
        sending.start()
        # Kill a worker each time another third of the replayed jobs ran, restarting it.
        deadline = time.monotonic() + sized(120, 300, 600)
        marks = [n // 3, 2 * n // 3]
        while time.monotonic() < deadline:
            fleet.check()
            ran = len(sink.ran & set(ids)) if sink.poll() >= 0 else 0
            if marks and ran >= marks[0]:
                marks.pop(0)
                fleet.kill(fleet.alive()[0])
                fleet.start(JOBSTREAM_TEST_FIXED="1")
                kills += 1
            if ran >= n and not sending.is_alive():
                break
            time.sleep(0.1)
        sending.join(60)
        assert result.get("status") == 200, str(result.get("body", ""))[:800]
        assert _count(result["body"], "replayed") == n
        fleet.wait(lambda: set(ids) <= {j for j, _ in stack.ledger_entries(timeout=60)}, 120,
                   "every replayed job recorded as succeeded")
        runs_before = len(stack.runs())
        # Run it twice: by filter, the saved progress leaves nothing to replay...
        status, body = _replay(url, jt, [("mode", "filtered")])
        assert status == 200 and _count(body, "dry-run-count") == 0
        # ...and a selected replay of records already replayed runs nothing (the ledger).
        _, listing, _ = get(f"{url}/dlq/{jt}?limit=20", BEARER)
        picked = re.findall(r'name="sel" value="(\d+:\d+)"', listing)[:20]
        status, body = _replay(url, jt, [("mode", "selected"), ("confirm", "yes"),
                                         *(("sel", s) for s in picked)])
        assert status == 200 and _count(body, "replayed") == len(picked) > 0
        ends = stack.end_offsets(stack.topics.main)
        fleet.wait(lambda: {p: max(o, 0) for p, o in stack.committed(stack.topics.main).items()}
                   == ends, 120, "the second replay consumed")
        assert len(stack.runs()) == runs_before
    books = _books(stack, fleet, ids, started, kills)
    assert kills >= 1, "no worker was killed during the replay"
    assert not books.violations, books.violations


def _books(stack: Stack, fleet: Fleet, ids: list[str], started: float, kills: int) -> Books:
    """Every job here is designed to end succeeded after the replay (its first death stays in
    the DLQ). lost: a job without a recorded success; twice: recorded twice, or run after its
    recorded success."""
    elapsed = time.monotonic() - started
    fleet.stop_all()
    runs = stack.runs()
    ledger = stack.ledger_entries(timeout=60)
    recorded = Counter(j for j, _ in ledger)
    lost = sorted(set(ids) - set(recorded))
    after = runs_after_completion(runs, ledger)
    double = sorted(j for j, c in recorded.items() if c > 1)
    v = list(fleet.check())
    if lost:
        v.append(f"lost {len(lost)} replayed jobs, e.g. {lost[:5]}")
    if after:
        v.append(f"{len(after)} runs after a recorded completion, e.g. {after[:3]}")
    if double:
        v.append(f"{len(double)} jobs recorded twice, e.g. {double[:5]}")
    ok_runs = [r for r in runs if r["job_id"] in set(ids)]
    books = Books(scenario="console_replay", scale=SCALE, jobs=len(ids), lost=len(lost),
                  runs_after_completion=len(after), dead_lettered=len(ids),
                  elapsed_s=round(elapsed, 1), runs=len(runs),
                  repeated_runs=len(ok_runs) - len({r["job_id"] for r in ok_runs}),
                  succeeded=len(set(recorded) & set(ids)), faults={"sigkill": kills},
                  workers_started=fleet.started, violations=v)
    record(books)
    print("\n" + books.line())
    return books
