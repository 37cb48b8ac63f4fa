"""Delayed jobs end to end (issue 22) on the real broker: publish with delay/run_at, a real
worker's scheduler dispatches each job to T at or after its due time, a real handler runs it;
the scheduler's owner killed mid-wait loses nothing and dispatches nothing twice."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobstream.producers.errors import InvalidJob
from jobstream.schemas import wire
from jobstream.schemas.partitioner import partition_for
from tests.support.harness import Stack, run_cli


@pytest.fixture
def stack(stack_factory: Any) -> Stack:
    """Its workers are stopped and its topics deleted at the end (conftest.py)."""
    s: Stack = stack_factory()
    return s


def _publish_due(stack: Stack, n: int, lo_s: float, hi_s: float) -> dict[str, int]:
    """n delayed jobs due lo_s..hi_s from now; job id -> due ms."""
    due: dict[str, int] = {}
    with stack.publisher() as pub:
        for i in range(n):
            when = datetime.now(UTC) + timedelta(seconds=random.uniform(lo_s, hi_s))
            jid = pub.publish_async(stack.job_type, {"seq": i}, key=f"k{i % 7}", run_at=when)
            due[jid] = int(when.timestamp() * 1000)
    return due


def _check_books(stack: Stack, due: dict[str, int]) -> None:
    runs = [r for r in stack.runs() if r["job_id"] in due]
    counts = Counter(r["job_id"] for r in runs)
    assert set(counts) == set(due), f"lost: {sorted(set(due) - set(counts))[:5]}"
    twice = [j for j, c in counts.items() if c > 1]
    assert not twice, f"run twice: {twice[:5]}"
    early = [(r["job_id"], due[r["job_id"]] - r["start"] * 1000) for r in runs
             if r["start"] * 1000 < due[r["job_id"]]]
    assert not early, f"run before due (job, ms early): {early[:5]}"


def test_delayed_jobs_run_at_or_after_due_time_once(stack: Stack) -> None:
    due = _publish_due(stack, 40, 2.0, 5.0)
    # Nothing is on T until due: the jobs wait in T.scheduled, keyed by job id.
    assert not stack.read_topic(stack.topics.main, timeout=5)
    sched = stack.read_topic(stack.topics.scheduled)
    assert {m.key().decode() for m in sched} == set(due)
    for m in sched:
        h = wire.decode_headers(m.headers())
        assert int(h[wire.RUN_AT]) == due[h[wire.JOB_ID]]
        assert m.partition() == partition_for(h[wire.KEY].encode(), 6)  # its key's partition
    stack.start_worker()
    stack.wait_runs(len(due), timeout=60)
    _check_books(stack, due)
    runs = {r["job_id"]: r for r in stack.runs()}
    assert {runs[j]["key"] for j in due} == {f"k{i}" for i in range(7)}  # the job's own key
    dispatched = stack.read_topic(stack.topics.main)
    assert all(wire.RUN_AT not in dict(m.headers() or []) for m in dispatched)
    # Each entry has its tombstone: a restore finds nothing pending.
    tombs = [m for m in stack.read_topic(stack.topics.scheduled) if m.value() is None]
    assert {m.key().decode() for m in tombs} == set(due)


def test_zero_or_past_delay_publishes_at_once_and_bad_times_are_refused(stack: Stack) -> None:
    with stack.publisher() as pub:
        now_id = pub.publish(stack.job_type, {"seq": 1}, delay=0)
        past_id = pub.publish(stack.job_type, {"seq": 2},
                              run_at=datetime.now(UTC) - timedelta(hours=1))
        with pytest.raises(InvalidJob, match="naive datetime"):
            pub.publish(stack.job_type, {"seq": 3}, run_at=datetime.now())
        with pytest.raises(InvalidJob, match="max_delay"):
            pub.publish(stack.job_type, {"seq": 4}, delay="400d")
        with pytest.raises(InvalidJob, match="delay"):
            pub.publish(stack.job_type, {"seq": 5}, delay="soon")
    on_main = {wire.decode_headers(m.headers())[wire.JOB_ID]
               for m in stack.read_topic(stack.topics.main)}
    assert on_main == {now_id, past_id}
    assert not stack.read_topic(stack.topics.scheduled, timeout=3)


def test_cli_publish_delay_and_at(stack: Stack) -> None:
    env = stack.env()
    res = run_cli("publish", stack.job_type, "--json", '{"seq": 1}', "--delay", "1h", env=env)
    assert res.returncode == 0, res.stderr
    jid = res.stdout.strip()
    res = run_cli("publish", stack.job_type, "--json", '{"seq": 2}', "--at",
                  "2030-01-01T00:00:00", env=env)
    assert res.returncode == 1 and "no UTC offset" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("publish", stack.job_type, "--json", '{"seq": 3}', "--delay", "1h",
                  "--at", "2030-01-01T00:00:00Z", env=env)
    assert res.returncode == 1 and "not both" in res.stderr
    keys = [m.key().decode() for m in stack.read_topic(stack.topics.scheduled)]
    assert keys == [jid]


def test_scheduler_killed_mid_wait_loses_nothing_and_dispatches_once(stack: Stack) -> None:
    first = stack.start_worker(log_name="first.log")
    time.sleep(4)  # the first worker owns and has restored every T.scheduled partition
    due = _publish_due(stack, 60, 6.0, 12.0)
    # Restored the entries, then killed before they are due; a second worker restores them.
    time.sleep(3)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    stack.start_worker(log_name="second.log")
    stack.wait_runs(len(due), timeout=90)
    time.sleep(2)  # a late duplicate would show by now
    _check_books(stack, due)
