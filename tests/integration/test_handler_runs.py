"""How handlers run inside a real worker process against the real broker: a timed-out sync
handler holds its job and key until its thread ends, `jobs.<type>.concurrency` bounds a job
type's running handlers, and sys.exit() in an async handler is a job failure (issue 26)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

from jobstream.schemas import wire
from tests.support.harness import Stack, free_port


def _hdrs(msg: Any) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in msg.headers() or []}


def _dead_letters(stack: Stack, n: int, timeout: float) -> list[dict[str, str]]:
    got: list[dict[str, str]] = []

    def enough() -> bool:
        got[:] = [_hdrs(m) for m in stack.read_topic(stack.topics.dlq)]
        return len(got) >= n

    stack.wait_for(enough, timeout, f"{n} dead letters")
    return got


def _events(stack: Stack, name: str, log: str = "worker-0.log") -> list[dict[str, Any]]:
    out = []
    for line in (stack.tmp / log).read_text().splitlines():
        if f'"{name}"' in line and line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name:
                out.append(event)
    return out


def _all_committed(stack: Stack) -> bool:
    main = stack.topics.main
    committed = stack.committed(main)
    return all(committed[p] == end for p, end in stack.end_offsets(main).items() if end)


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def test_a_timed_out_sync_handler_holds_its_job_and_key_until_its_thread_ends(
    stack_factory,  # type: ignore[no-untyped-def]
) -> None:
    """Issue 26 item 7: with timeout_s 1 and a 1 s tier, a sync handler sleeping 3 s timed out
    at 1 s, its retry ran from ~2 s while the first run went on to 3 s, and the key's next
    job started at 1 s beside it. Now (default abandon_after_s) the timeout is logged when it
    happens, but the retry is written, and the key's next job starts, only once the thread
    has really ended: no two runs of one job, or of one key, at once."""
    stack: Stack = stack_factory(
        job={"timeout_s": 1, "retry_tiers": ["1s"], "max_attempts": 2},
        worker={"max_in_flight": 4},
    )
    [slow] = stack.publish_many([({"seq": 0, "behaviour": "sleep_ms:3000"}, "k")])
    [after] = stack.publish_many([({"seq": 1, "behaviour": "ok"}, "k")])
    stack.start_worker()
    [dead] = _dead_letters(stack, 1, timeout=60)
    assert (dead[wire.JOB_ID], dead[wire.ERROR_CATEGORY], dead[wire.ATTEMPT]) == (
        slow,
        "timeout",
        "2",
    )
    # both runs of `slow` end in the sink (late): their threads ran on past the timeout
    stack.wait_for(lambda: len(stack.runs()) >= 3, 30, "both runs of the slow job")
    runs = stack.runs()
    first, second = sorted((r for r in runs if r["job_id"] == slow), key=lambda r: r["attempt"])
    [nxt] = [r for r in runs if r["job_id"] == after]
    assert (first["attempt"], second["attempt"]) == (1, 2)
    assert second["start"] >= first["end"], (
        f"attempt 2 started {first['end'] - second['start']:.2f}s before attempt 1 ended"
    )
    assert nxt["start"] >= first["end"], (
        f"the key's next job started {first['end'] - nxt['start']:.2f}s before the slow one "
        "ended"
    )
    overran = [e for e in _events(stack, "handler_overran") if e["job_id"] == slow]
    assert [e["attempt"] for e in overran] == [1, 2]
    assert not _events(stack, "handler_abandoned")
    assert stack.stop_all(timeout=30) == [0]
    assert _all_committed(stack)


def test_concurrency_bounds_a_job_types_running_handlers(stack_factory) -> None:  # type: ignore[no-untyped-def]
    """Issue 26 item 6: `jobs.<type>.concurrency` was accepted (and in the Helm values) but
    unused: 16 handlers of the type ran at once. Now at most `concurrency` run at once in a
    worker, while a key's jobs still run in order and every offset is committed."""
    stack: Stack = stack_factory(job={"concurrency": 3}, worker={"max_in_flight": 16})
    spread = [({"seq": i, "behaviour": "sleep_ms:250"}, f"k{i}") for i in range(24)]
    same = [({"seq": i, "behaviour": "sleep_ms:50"}, "same") for i in range(6)]
    ids = stack.publish_many(spread + same)
    stack.start_worker()
    runs = stack.wait_runs(len(ids), timeout=60)
    edges = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak <= 3, f"{peak} handlers of a job type with concurrency 3 ran at once"
    assert peak >= 2, "the jobs ran one at a time: the test cannot tell a limit from none"
    ordered = sorted((r for r in runs if r["key"] == "same"), key=lambda r: r["start"])
    assert [r["seq"] for r in ordered] == list(range(6))
    stack.wait_for(lambda: _all_committed(stack), 30, "every offset committed")
    assert stack.stop_all() == [0]


def test_jobs_waiting_for_a_concurrency_slot_do_not_hold_a_rebalance(stack_factory) -> None:  # type: ignore[no-untyped-def]
    """Issue 26 item 6: jobs waiting for a slot of their type have not started. When their
    partitions are revoked they are dropped like queued jobs (the next owner runs them), so a
    revoke does not sit out worker.revoke_grace_s running a backlog it is giving away, and no
    job is lost."""
    stack: Stack = stack_factory(
        job={"concurrency": 1}, worker={"max_in_flight": 16, "revoke_grace_s": 15}
    )
    ids = stack.publish_many(
        [({"seq": i, "behaviour": "sleep_ms:300"}, f"k{i}") for i in range(60)]
    )
    stack.start_worker()
    stack.wait_for(lambda: len(stack.runs()) >= 2, 30, "the first worker running")
    stack.start_worker()
    stack.wait_for(lambda: bool(_events(stack, "assigned", "worker-1.log")), 40, "a rebalance")
    joined = _events(stack, "subscribed", "worker-1.log")[0]["timestamp"]
    assigned = _events(stack, "assigned", "worker-1.log")[0]["timestamp"]
    took = (datetime.fromisoformat(assigned) - datetime.fromisoformat(joined)).total_seconds()
    assert took < 8, f"the second worker waited {took:.1f}s for the first one's revoke"
    runs = stack.wait_runs(len(ids), timeout=60)
    assert {r["job_id"] for r in runs} == set(ids)
    stack.wait_for(lambda: _all_committed(stack), 30, "every offset committed")
    assert stack.stop_all() == [0, 0]


def test_sys_exit_in_an_async_handler_is_a_job_failure(stack_factory) -> None:  # type: ignore[no-untyped-def]
    """Issue 26 item 12: sys.exit() in an async handler stopped the worker's event loop: later
    async jobs stayed started for ever, /healthz said 200 and SIGTERM took the whole grace.
    Now it is that job's failure (retried, then dead-lettered as SystemExit), later async jobs
    run, /healthz stays 200 and the worker stops at once."""
    port = free_port()
    stack: Stack = stack_factory(
        job_type="test.aecho",
        job={"retry_tiers": ["1s"], "max_attempts": 2},
        worker={"http_port": port, "shutdown_grace_s": 20},
    )
    [bad] = stack.publish_many([({"seq": 0, "behaviour": "exit:0"}, "x")])
    stack.start_worker()
    [dead] = _dead_letters(stack, 1, timeout=60)
    assert (dead[wire.JOB_ID], dead[wire.ERROR_CLASS], dead[wire.ATTEMPT]) == (
        bad,
        "SystemExit",
        "2",
    )
    ids = stack.publish_many([({"seq": i, "behaviour": "ok"}, f"k{i}") for i in range(10)])
    stack.wait_for(lambda: {r["job_id"] for r in stack.runs()} >= set(ids), 30, "later jobs")
    assert _get(port, "/healthz") == 200
    t0 = time.monotonic()
    assert stack.stop_all(timeout=30) == [0]
    assert time.monotonic() - t0 < 10
