"""Batches end to end (issue 23) with real workers on the real broker: a batch of 10,000 members,
some dead-lettered by design, runs its callback exactly once with the right counts; a nested
batch closes its outer member; a DLQ replay of a member updates the counts without a second
callback; a worker SIGKILLed mid-batch loses no member and the callback still runs once."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from jobstream.consumers.batches.topic import read_batch
from jobstream.schemas import batch_record as br
from tests.support.harness import Stack, run_cli

JT = "test.batch"


def _stack(stack_factory: Any, worker: dict[str, Any] | None = None, **kw: Any) -> Stack:
    return stack_factory(job_type=JT, job={"retry_tiers": ["1s"], "max_attempts": 2, **kw},
                         **({"worker": worker} if worker else {}))


def _start(stack: Stack, **env: str) -> None:
    n = len(stack.procs)
    stack.spawn_worker("tests.apps.batches", (), stack.tmp / f"worker-{n}.log",
                       stack.env(**env), False)


def _callbacks(stack: Stack, batch_id: str) -> list[dict[str, Any]]:
    return [r for r in stack.runs() if r["behaviour"] == "callback"
            and r["batch_id"] == batch_id]


def _wait_callback(stack: Stack, batch_id: str, timeout: float) -> dict[str, Any]:
    stack.wait_for(lambda: bool(_callbacks(stack, batch_id)), timeout, f"batch {batch_id}")
    return _callbacks(stack, batch_id)[0]


def _counts(r: dict[str, Any]) -> tuple[int, int, int, int]:
    return r["total"], r["succeeded"], r["dead_lettered"], r["cancelled"]


def test_a_batch_of_10000_members_calls_back_once_with_the_counts(stack_factory: Any) -> None:
    stack = _stack(stack_factory)
    _start(stack)
    payloads = [{"seq": i, "behaviour": "permanent" if i % 97 == 0 else "ok"}
                for i in range(10_000)]
    dead = sum(1 for p in payloads if p["behaviour"] == "permanent")
    t0 = time.monotonic()
    with stack.publisher() as pub:
        bid = pub.batch(JT, payloads, on_complete=(JT, {"seq": -1, "behaviour": "callback"}),
                        on_success=(JT, {"seq": -2, "behaviour": "callback"}))
    published = time.monotonic() - t0
    cb = _wait_callback(stack, bid, 90)
    assert _counts(cb) == (10_000, 10_000 - dead, dead, 0), cb
    assert cb["job_id"] == br.callback_id(bid)
    time.sleep(2)
    assert len(_callbacks(stack, bid)) == 1, "on_complete once; on_success not (dead letters)"
    members = [r for r in stack.runs() if r["batch"] == bid]
    assert len({r["job_id"] for r in members}) == 10_000 - dead, "every member ran"
    assert len(members) == 10_000 - dead, "each once"
    e = read_batch(stack.settings, bid)
    assert e is not None and e.batch is not None and e.batch.state == "closed"
    assert e.batch.counts == {"succeeded": 10_000 - dead, "dead_lettered": dead,
                              "cancelled": 0}
    assert published < 30, f"publishing 10,000 members took {published:.1f}s"


def test_a_nested_batch_closes_its_outer_member(stack_factory: Any) -> None:
    stack = _stack(stack_factory)
    _start(stack)
    with stack.publisher() as pub:
        bid = pub.batch(JT, [{"seq": 1}, {"seq": 2, "behaviour": "nest:4"}, {"seq": 3}],
                        on_complete=(JT, {"seq": -1, "behaviour": "callback"}),
                        on_success=(JT, {"seq": -2, "behaviour": "callback"}))
    stack.wait_for(lambda: len(_callbacks(stack, bid)) == 2, 60, "outer callbacks")
    outer = _callbacks(stack, bid)
    assert {r["seq"] for r in outer} == {-1, -2}, "on_success too: nothing dead-lettered"
    assert all(_counts(r) == (3, 3, 0, 0) for r in outer), outer
    inner_cbs = [r for r in stack.runs() if r["behaviour"] == "callback" and r["seq"] == 100002]
    assert len(inner_cbs) == 1 and _counts(inner_cbs[0]) == (4, 4, 0, 0), inner_cbs
    inner_members = [r for r in stack.runs() if r["batch"] == inner_cbs[0]["batch_id"]]
    assert len(inner_members) == 4
    last_inner = max(r["end"] for r in inner_members)
    assert min(r["end"] for r in outer) > last_inner, "the outer batch waited for the inner one"
    inner = read_batch(stack.settings, inner_cbs[0]["batch_id"])
    assert inner is not None and inner.batch is not None and inner.batch.parent is not None
    assert inner.batch.parent[0] == bid


def test_a_dlq_replay_of_a_member_updates_the_counts(stack_factory: Any) -> None:
    stack = _stack(stack_factory)
    _start(stack)
    with stack.publisher() as pub:
        bid = pub.batch(JT, [{"seq": 1}, {"seq": 2, "behaviour": "permanent"}, {"seq": 3}],
                        on_complete=(JT, {"seq": -1, "behaviour": "callback"}))
    cb = _wait_callback(stack, bid, 60)
    assert _counts(cb) == (3, 2, 1, 0)
    assert stack.stop_all() == [0]
    stack.procs.clear()
    _start(stack, JOBSTREAM_TEST_FIXED="1")  # the fix deployed, then the member replayed
    res = run_cli("dlq", "replay", JT, "--yes", "--from-start",
                  env={"JOBSTREAM_CONFIG": str(stack.config_path)})
    assert res.returncode == 0, res.stderr

    def updated() -> bool:
        e = read_batch(stack.settings, bid)
        return e is not None and e.counts() == {"succeeded": 3, "dead_lettered": 0,
                                                "cancelled": 0}

    stack.wait_for(updated, 60, "the replayed member's success")
    shown = run_cli("batches", "show", bid, env={"JOBSTREAM_CONFIG": str(stack.config_path)})
    assert shown.returncode == 0, shown.stderr
    assert "succeeded 3" in shown.stdout and "closed" in shown.stdout, shown.stdout
    member = run_cli("jobs", "show", JT, br.member_id(bid, 1), env={
        "JOBSTREAM_CONFIG": str(stack.config_path)})
    assert f"batch: {bid}" in member.stdout and "succeeded" in member.stdout, member.stdout
    time.sleep(1.5)
    assert len(_callbacks(stack, bid)) == 1, "the callback does not run again"


def test_a_worker_killed_mid_batch_loses_no_member(stack_factory: Any) -> None:
    stack = _stack(stack_factory)
    _start(stack)
    _start(stack)
    n = 3000
    with stack.publisher() as pub:
        bid = pub.batch(JT, [{"seq": i} for i in range(n)],
                        on_complete=(JT, {"seq": -1, "behaviour": "callback"}))
    stack.wait_for(lambda: len(stack.runs()) >= n // 4, 60, "a quarter of the members")
    stack.procs[0].send_signal(signal.SIGKILL)
    stack.procs[0].wait(10)
    _start(stack)
    cb = _wait_callback(stack, bid, 90)
    assert _counts(cb) == (n, n, 0, 0), cb
    time.sleep(2)
    assert len(_callbacks(stack, bid)) == 1
    ran = {r["job_id"] for r in stack.runs() if r["batch"] == bid}
    assert ran == {br.member_id(bid, i) for i in range(n)}, "every member ran"


def test_cancelling_a_batch_cancels_its_pending_members_and_it_still_closes(
        stack_factory: Any) -> None:
    stack = _stack(stack_factory)
    with stack.publisher() as pub:
        bid = pub.batch(JT, [{"seq": i} for i in range(4)],
                        on_complete=(JT, {"seq": -1, "behaviour": "callback"}),
                        on_success=(JT, {"seq": -2, "behaviour": "callback"}))
    env = {"JOBSTREAM_CONFIG": str(stack.config_path)}
    res = run_cli("jobs", "cancel", "--batch", bid, "--confirm-timeout", "0s", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 member(s) not final" in res.stdout, res.stdout
    _start(stack)
    cb = _wait_callback(stack, bid, 60)
    assert _counts(cb) == (4, 0, 0, 4), cb
    time.sleep(1.5)
    assert len(_callbacks(stack, bid)) == 1, "on_success does not run: members were cancelled"
    assert not [r for r in stack.runs() if r["batch"] == bid], "no member ran"
    again = run_cli("jobs", "cancel", "--batch", bid, env=env)
    assert again.returncode == 0 and "0 member(s) not final" in again.stdout, again.stdout
    shown = run_cli("jobs", "show", JT, br.member_id(bid, 0), env=env)
    assert "cancelled" in shown.stdout, shown.stdout


@pytest.mark.parametrize("mode", ["transactional", "at_least_once"])
def test_a_member_cancelled_alone_still_lets_its_batch_close(stack_factory: Any,
                                                             mode: str) -> None:
    """`jobs cancel` of one member (not the batch): the worker skips it and writes its
    `cancelled` member record, so the batch closes with cancelled=1. Before the fix the skip
    wrote no member record and the batch stayed open for ever, its callback never run."""
    stack = _stack(stack_factory, worker={"mode": mode})
    with stack.publisher() as pub:
        bid = pub.batch(JT, [{"seq": i} for i in range(5)],
                        on_complete=(JT, {"seq": -1, "behaviour": "callback"}))
        res = pub.cancel(JT, br.member_id(bid, 2), confirm_timeout=0)
        assert res.outcome == "cancelled", res
    _start(stack)
    cb = _wait_callback(stack, bid, 60)
    assert _counts(cb) == (5, 4, 0, 1), cb
    ran = sorted(r["seq"] for r in stack.runs() if r["batch"] == bid)
    assert ran == [0, 1, 3, 4], ran
    time.sleep(1.5)
    assert len(_callbacks(stack, bid)) == 1


def test_a_closed_batch_is_retired_after_the_retention(stack_factory: Any) -> None:
    """Tombstones for a closed batch's records once `worker.batch_retention_s` has passed, on
    the real broker (compaction then drops them): `batches show` no longer finds it."""
    stack = _stack(stack_factory, worker={"batch_retention_s": 1})
    with stack.publisher() as pub:
        bid = pub.batch(JT, [{"seq": i} for i in range(3)],
                        on_complete=(JT, {"seq": -1, "behaviour": "callback"}))
    _start(stack)
    _wait_callback(stack, bid, 60)
    stack.wait_for(lambda: read_batch(stack.settings, bid) is None, 60, "retired")
    env = {"JOBSTREAM_CONFIG": str(stack.config_path)}
    shown = run_cli("batches", "show", bid, env=env)
    assert shown.returncode == 4 and "no record of it" in shown.stdout, shown.stdout
