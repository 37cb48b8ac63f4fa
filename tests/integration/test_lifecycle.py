"""The job lifecycle end to end (issue 21), with a real worker on a real broker: each attempt's
outcome is a T.history record written in the worker's interval, a handler's return value is
the job's result (its digest in the ledger), `ctx.progress` is recorded, and a result that
cannot be stored fails the attempt as permanent, naming the limit. The chains the worker wrote
verify intact, across a worker taking partitions over from a stopped one."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from tests.support.harness import Stack, run_cli


@pytest.fixture(params=["test.echo", "test.aecho"])
def stack(request: pytest.FixtureRequest, stack_factory: Any) -> Stack:
    """Its workers are stopped and its topics deleted at the end (conftest.py)."""
    s: Stack = stack_factory(job_type=request.param, job={"result_max_bytes": 1024})
    return s


def _wait_final(stack: Stack, job_id: str, key: str | None = None) -> object:
    with stack.publisher() as pub:
        return pub.wait(stack.job_type, job_id, key=key, timeout=90)


def test_results_retries_dead_letters_and_progress(stack: Stack) -> None:
    stack.start_worker()
    with stack.publisher() as pub:
        ok = pub.publish(stack.job_type, {"seq": 1, "behaviour": "result"}, key="a")
        retried = pub.publish(stack.job_type, {"seq": 2, "behaviour": "fail_until:2"})
        dead = pub.publish(stack.job_type, {"seq": 3, "behaviour": "permanent"})
        big = pub.publish(stack.job_type, {"seq": 4, "behaviour": "big_result:5000"})
        bad = pub.publish(stack.job_type, {"seq": 5, "behaviour": "bad_result"})
        slow = pub.publish(stack.job_type, {"seq": 6, "behaviour": "progress"})
    st = _wait_final(stack, ok, "a")
    assert (st.state, st.attempts, st.result) == ("succeeded", 1, {"seq": 1, "attempt": 1})
    assert st.trace_id and st.events[0]["policy"]["max_attempts"] == 4
    st = _wait_final(stack, retried)
    assert (st.state, st.attempts) == ("succeeded", 2), st
    first = st.events[0]
    assert first["outcome"] == "retried" and first["error"]["class"] == "ConnectionError"
    assert first["retry"]["tier"] == stack.topics.retries[0] and first["retry"]["due_at"] > 0
    st = _wait_final(stack, dead)
    assert st.state == "dead_lettered" and st.last_error["category"] == "permanent", st
    st = _wait_final(stack, big)
    assert st.state == "dead_lettered"
    assert "over result_max_bytes (1,024)" in st.last_error["message"], st.last_error
    st = _wait_final(stack, bad)
    assert st.state == "dead_lettered" and "not JSON-serialisable" in st.last_error["message"]
    st = _wait_final(stack, slow)
    progress = [e for e in st.events if e["event"] == "progress"]
    assert [p["fraction"] for p in progress] == [0.25, 0.75], st.events
    assert st.progress == (0.75, "nearly there") and st.state == "succeeded"


def test_chains_continue_across_owners_and_verify(stack: Stack) -> None:
    first = stack.start_worker()
    ids = stack.publish_many([({"seq": i}, f"k{i}") for i in range(60)])
    stack.wait_runs(60)
    first.send_signal(signal.SIGTERM)
    assert first.wait(60) == 0
    stack.start_worker()  # takes every partition over: its records extend the same chains
    ids += stack.publish_many([({"seq": 100 + i}, f"k{i}") for i in range(60)])
    stack.wait_runs(120)
    _wait_final(stack, ids[-1], "k59")
    res = run_cli("audit", "verify", stack.job_type, "--json",
                  env={"JOBSTREAM_CONFIG": str(stack.config_path)})
    data = json.loads(res.stdout)
    assert res.returncode == 0 and data["ok"], json.dumps(data)[:3000]
    total = sum(p["events"] for p in data["partitions"].values())  # (records hold batches)
    assert total >= 120, total
    assert not any(p["starts_mid_chain"] for p in data["partitions"].values())
