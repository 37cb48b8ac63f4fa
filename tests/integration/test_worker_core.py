"""Worker core against the real broker: every job handled, per-key order, commits, signals."""

from __future__ import annotations

import signal
import time
from collections import defaultdict

from tests.support.harness import Stack


def _assert_key_order(runs: list[dict]) -> None:
    """Per-key order: every run of seq s > 0 starts after some run of seq s - 1 of its key has
    ended. A redone stretch (a rewind after an aborted interval reruns jobs in order) passes;
    a job overtaking its predecessor, or running alongside it, does not."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_key[r["key"]].append(r)
    for key, key_runs in by_key.items():
        first_end: dict[int, float] = {}
        for r in key_runs:
            first_end[r["seq"]] = min(first_end.get(r["seq"], r["end"]), r["end"])
        for r in key_runs:
            before = first_end.get(r["seq"] - 1)
            if r["seq"] > 0 and (before is None or before > r["start"]):
                detail = sorted((x["start"], x["seq"], x["pid"], x["attempt"]) for x in key_runs)
                raise AssertionError(f"key {key}: seq {r['seq']} ran before seq "
                                     f"{r['seq'] - 1} had ended: {detail}")


def _wait_committed_to_end(stack: Stack, timeout: float = 30) -> None:
    topic = stack.topics.main
    ends = stack.end_offsets(topic)
    stack.wait_for(
        lambda: {p: max(o, 0) for p, o in stack.committed(topic).items()} == ends,
        timeout,
        f"committed offsets == end offsets {ends}",
    )


def test_two_workers_20k_jobs_key_order_and_commits(stack_factory) -> None:
    stack: Stack = stack_factory(worker={"max_in_flight": 256})
    n, keys = 20_000, 200
    ids = stack.publish_many(
        [({"seq": i // keys, "behaviour": "ok"}, f"k{i % keys}") for i in range(n)]
    )
    stack.start_worker()
    stack.start_worker()
    runs = stack.wait_runs(n, timeout=240)
    assert {r["job_id"] for r in runs} == set(ids)
    _assert_key_order(runs)
    _wait_committed_to_end(stack)
    assert stack.stop_all() == [0, 0]
    logs = "".join(p.read_text() for p in stack.tmp.glob("worker-*.log"))
    aborted = logs.count('"event": "interval_aborted"')
    print(f"\n20k jobs: {len(runs)} runs for {n} jobs, {aborted} aborted intervals")


def test_sigterm_finishes_in_flight_and_exits_zero(stack_factory) -> None:
    stack: Stack = stack_factory(worker={"shutdown_grace_s": 20})
    ids = stack.publish_many(
        [({"seq": 0, "behaviour": "sleep_ms:3000"}, f"k{i}") for i in range(8)]
    )
    proc = stack.start_worker(JOBSTREAM_LOG__LEVEL="DEBUG")  # `started` is a DEBUG event
    stack.wait_for(lambda: _started(stack) >= 8, 30, "8 jobs started")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(25) == 0
    assert time.monotonic() - t0 < 20
    assert {r["job_id"] for r in stack.runs()} == set(ids)  # in-flight jobs finished
    _wait_committed_to_end(stack, timeout=5)


def _started(stack: Stack) -> int:
    log = (stack.tmp / "worker-0.log").read_text()
    return log.count('"event": "started"')


def test_sigkill_mid_run_loses_nothing(stack_factory) -> None:
    stack: Stack = stack_factory()
    n = 3000
    ids = stack.publish_many(
        [({"seq": i // 30, "behaviour": "sleep_ms:5"}, f"k{i % 30}") for i in range(n)]
    )
    first = stack.start_worker()
    stack.wait_for(lambda: len(stack.runs()) >= 500, 60, "500 runs")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    stack.start_worker()
    runs = stack.wait_runs(n, timeout=120)
    assert {r["job_id"] for r in runs} >= set(ids)
    twice = len(runs) - len({r["job_id"] for r in runs})
    print(f"\nSIGKILL mid-run: {n} jobs, {len(runs)} runs, {twice} ran twice")


def test_handler_longer_than_max_poll_interval_causes_no_rebalance(stack_factory) -> None:
    stack: Stack = stack_factory(
        worker={"max_poll_interval_ms": 7000, "session_timeout_ms": 6000}, job={"timeout_s": 30}
    )
    [jid] = stack.publish_many([({"seq": 0, "behaviour": "sleep_ms:10000"}, "k")])
    stack.start_worker()
    runs = stack.wait_runs(1, timeout=60)
    time.sleep(1)
    assert [r["job_id"] for r in runs] == [jid]
    log = (stack.tmp / "worker-0.log").read_text()
    assert '"event": "revoked"' not in log and '"event": "fenced"' not in log
    assert log.count('"event": "assigned"') == 1


def test_key_ordered_concurrency_is_ten_times_sequential(stack_factory) -> None:
    """64 in flight, handlers sleeping 20 ms: at least 10x the sequential 50 jobs/s."""
    stack: Stack = stack_factory(worker={"max_in_flight": 64})
    n = 1200
    stack.publish_many([({"seq": 0, "behaviour": "sleep_ms:20"}, f"k{i}") for i in range(n)])
    stack.start_worker()
    runs = stack.wait_runs(n, timeout=120)
    span = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    rate = n / span
    print(f"\nI/O-bound: {rate:.0f} jobs/s with 64 in flight = {rate / 50:.1f}x sequential")
    assert rate >= 500, f"{rate:.0f} jobs/s is below 10x the sequential rate (500/s)"
