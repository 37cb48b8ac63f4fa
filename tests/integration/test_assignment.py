"""worker.assignment against the real broker: how a group of worker processes spreads the main
topic's partitions (every process also subscribes to the retry tiers)."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.support.harness import Stack


def _owned(log: Path) -> set[str]:
    """The partitions a worker holds now, replayed from its assigned/revoked log lines."""
    held: set[str] = set()
    for line in log.read_text().splitlines():
        if not line.startswith("{"):
            continue  # librdkafka's own lines
        event = json.loads(line)
        if event.get("event") == "assigned":
            held |= set(event["partitions"])
        elif event.get("event") in ("revoked", "partitions_lost"):
            held -= set(event["partitions"])
    return held


def _main_spread(stack: Stack, workers: int) -> list[int]:
    main = stack.topics.main + "["
    return sorted(
        sum(1 for p in _owned(stack.tmp / f"worker-{i}.log") if p.startswith(main))
        for i in range(workers)
    )


@pytest.mark.parametrize("assignment", ["range", "consumer-protocol"])
def test_three_workers_share_the_main_topic_evenly(stack_factory, assignment: str) -> None:
    stack: Stack = stack_factory(worker={"assignment": assignment})
    for _ in range(3):
        stack.start_worker()
    stack.wait_for(lambda: _main_spread(stack, 3) == [2, 2, 2], 90, "main partitions 2/2/2")
    # Still working after the moves: every job runs, on all three processes.
    stack.publish_many([({"seq": 0, "behaviour": "ok"}, f"k{i}") for i in range(120)])
    runs = stack.wait_runs(120)
    assert len(Counter(r["pid"] for r in runs if r["topic"] == stack.topics.main)) == 3
    assert stack.stop_all() == [0, 0, 0]


def test_consumer_protocol_takes_the_session_timeout_from_the_broker(stack_factory) -> None:
    """The group's session is the broker's (the local broker sets 10 s); the worker's freeze
    watch must use it, not worker.session_timeout_ms (6 s in the tests)."""
    stack: Stack = stack_factory(worker={"assignment": "consumer-protocol"})
    stack.start_worker()
    log = stack.tmp / "worker-0.log"
    stack.wait_for(lambda: '"event": "subscribed"' in log.read_text(), 30, "subscribed")
    subscribed = [json.loads(x) for x in log.read_text().splitlines() if '"subscribed"' in x]
    assert subscribed[0]["session_s"] == 10.0
    assert stack.stop_all() == [0]


def test_a_worker_whose_assignment_differs_from_its_group_stops_with_exit_5(
    stack_factory,
) -> None:
    """Issue 26 item 21: a cooperative-sticky worker joining a group of range workers logged
    "JoinGroup failed: Inconsistent group protocol" every 2 s for ever and never exited. Now
    it stops at once with exit code 5 and one message naming worker.assignment, its own value
    and the group's; the group's own worker goes on."""
    stack: Stack = stack_factory(worker={"assignment": "range"})
    stack.start_worker()
    first = stack.tmp / "worker-0.log"
    stack.wait_for(lambda: '"event": "assigned"' in first.read_text(), 60, "first worker joined")
    odd = stack.start_worker(JOBSTREAM_WORKER__ASSIGNMENT="cooperative-sticky")
    try:
        rc = odd.wait(60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the mismatched worker never exited; logs in {stack.tmp}") from None
    assert rc == 5
    events = [
        json.loads(x) for x in (stack.tmp / "worker-1.log").read_text().splitlines()
        if x.startswith("{")
    ]
    stop = [e for e in events if e["event"] == "assignment_mismatch"]
    assert len(stop) == 1, events[-5:]
    reason = stop[0]["reason"]
    assert "worker.assignment" in reason and "cooperative-sticky" in reason, reason
    assert "'range'" in reason, reason  # what the group's members use
    assert sum(e["event"] == "consumer_error" for e in events) <= 1
    stack.procs.remove(odd)  # its exit is this test's point, not a death to report
    assert stack.procs[0].poll() is None
    stack.publish_many([({"seq": 0, "behaviour": "ok"}, "k")])
    stack.wait_runs(1)
    assert stack.stop_all() == [0]
