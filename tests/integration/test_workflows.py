"""Workflows end to end (issue 23) with real workers on the real broker: ctx.enqueue children
written with their parent's success (a parent that fails twice first enqueues each child once;
a dead-lettered parent leaves none, read with read_committed), and a chain handing its results
along, its failing middle step retried by the tiers."""

from __future__ import annotations

from typing import Any

from jobstream import chain
from jobstream.consumers.runtime.children import child_id
from jobstream.schemas import wire
from tests.support.harness import Stack, run_cli


def _start(stack: Stack, **env: str) -> None:
    n = len(stack.procs)
    stack.spawn_worker("tests.apps.flows", (), stack.tmp / f"worker-{n}.log", stack.env(**env),
                       False)


def _headers(m: Any) -> dict[str, str]:
    return wire.decode_headers(m.headers())


def _children_of(stack: Stack, parent: str) -> list[Any]:
    return [m for m in stack.read_topic(stack.topics.main)
            if _headers(m).get(wire.PARENT_JOB_ID) == parent]


def test_a_parent_failing_twice_enqueues_each_child_once(stack_factory: Any) -> None:
    stack: Stack = stack_factory()
    _start(stack)
    with stack.publisher() as pub:
        pid = pub.publish(stack.job_type, {"seq": 1, "behaviour": "parent:3:fail_until:3"})
    stack.wait_for(lambda: len([r for r in stack.runs() if r["parent_job_id"] == pid]) >= 3,
                   90, "the three children ran")
    stack.wait_for(lambda: any(r["job_id"] == pid for r in stack.runs()), 30, "the parent")
    with stack.publisher() as pub:
        st = pub.wait(stack.job_type, pid, timeout=60)
    assert (st.state, st.attempts) == ("succeeded", 3), st
    expected = {child_id(pid, None, i) for i in range(3)}
    assert set(st.children) == expected
    runs = stack.runs()
    [parent] = [r for r in runs if r["job_id"] == pid]
    trace = parent["trace_id"]
    kids = [r for r in runs if r["parent_job_id"] == pid]
    assert sorted(r["job_id"] for r in kids) == sorted(expected), "each child ran once"
    assert {r["trace_id"] for r in kids} == {trace}
    records = _children_of(stack, pid)
    assert sorted(_headers(m)[wire.JOB_ID] for m in records) == sorted(expected), \
        "one committed record per child"
    assert all(wire.trace_id(_headers(m)[wire.TRACEPARENT]) == trace for m in records)


def test_a_dead_lettered_parent_leaves_no_child(stack_factory: Any) -> None:
    stack: Stack = stack_factory(job={"max_attempts": 2})
    _start(stack)
    with stack.publisher() as pub:
        dead = pub.publish(stack.job_type, {"seq": 2, "behaviour": "parent:3:fail_until:9"})
        perm = pub.publish(stack.job_type, {"seq": 3, "behaviour": "parent:3:permanent"})
        ok = pub.publish(stack.job_type, {"seq": 4, "behaviour": "parent:1:fail_until:1"})
    with stack.publisher() as pub:
        for jid in (dead, perm):
            st = pub.wait(stack.job_type, jid, timeout=90)
            assert st.state == "dead_lettered" and st.children == [], st
        pub.wait(stack.job_type, ok, timeout=60)
    # the control parent's child is committed, so the topic was read past the failed ones
    stack.wait_for(lambda: any(r["parent_job_id"] == ok for r in stack.runs()), 30, "control")
    assert _children_of(stack, dead) == [] and _children_of(stack, perm) == []
    assert len(_children_of(stack, ok)) == 1
    assert not [r for r in stack.runs() if r["parent_job_id"] in (dead, perm)]


def test_a_chain_passes_results_along_and_resumes_after_a_retried_step(
        stack_factory: Any) -> None:
    stack: Stack = stack_factory()
    _start(stack)
    with stack.publisher() as pub:
        first = pub.publish_chain(chain(
            (stack.job_type, {"seq": 10, "behaviour": "step"}),
            (stack.job_type, {"seq": 0, "behaviour": "step_fail_until:3"}),
            (stack.job_type, {"seq": 0, "behaviour": "step"})), key="order-7")
    second = child_id(first, "~chain", 0)
    third = child_id(second, "~chain", 0)
    with stack.publisher() as pub:
        try:
            st = pub.wait(stack.job_type, third, key="order-7", timeout=120)
        except TimeoutError as e:
            steps = [pub.status(stack.job_type, j, key="order-7") for j in (first, second)]
            log = (stack.tmp / "worker-0.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"the last step did not finish: {steps}\n{log}") from e
        assert st.state == "succeeded" and st.result == {"seq": 13}, st
        mid = pub.wait(stack.job_type, second, key="order-7", timeout=30)
    assert (mid.state, mid.attempts, mid.parent_job_id) == ("succeeded", 3, first)
    assert mid.children == [third]
    runs = {r["job_id"]: r for r in stack.runs()}
    assert [runs[j]["seq"] for j in (first, second, third)] == [10, 11, 12]
    assert len({runs[j]["trace_id"] for j in (first, second, third)}) == 1, "one trace"


def test_a_dead_lettered_step_stops_the_chain_and_a_replay_resumes_it(
        stack_factory: Any) -> None:
    stack: Stack = stack_factory()
    _start(stack)
    with stack.publisher() as pub:
        first = pub.publish_chain(chain(
            (stack.job_type, {"seq": 20, "behaviour": "step"}),
            (stack.job_type, {"seq": 0, "behaviour": "step_permanent"}),
            (stack.job_type, {"seq": 0, "behaviour": "step"})), key="order-8")
        second = child_id(first, "~chain", 0)
        third = child_id(second, "~chain", 0)
        st = pub.wait(stack.job_type, second, key="order-8", timeout=90)
        assert st.state == "dead_lettered" and st.chain is not None, st
    shown = run_cli("jobs", "show", stack.job_type, second, "--key", "order-8",
                    env={"JOBSTREAM_CONFIG": str(stack.config_path)})
    assert f"stopped at step 2 of 3 ({stack.job_type}); not run: {stack.job_type}" in \
        shown.stdout, shown.stdout + shown.stderr
    assert stack.stop_all() == [0]
    assert third not in {r["job_id"] for r in stack.runs()}, "the chain stopped"
    stack.procs.clear()
    _start(stack, JOBSTREAM_TEST_FIXED="1")  # the fix deployed, then the step replayed
    res = run_cli("dlq", "replay", stack.job_type, "--yes", "--from-start",
                  env={"JOBSTREAM_CONFIG": str(stack.config_path)})
    assert res.returncode == 0, res.stderr
    with stack.publisher() as pub:
        st = pub.wait(stack.job_type, third, key="order-8", timeout=90)
    assert st.state == "succeeded" and st.result == {"seq": 23}, st
