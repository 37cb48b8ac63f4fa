"""ctx.enqueue and chains (consumers/runtime/children.py, producers/chains.py) on the in-memory
Kafka: derived child ids, children produced only with the parent's success, discarded with a
failed attempt, a chain's results handed along, a dead-lettered step stopping its chain."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from jobstream import chain
from jobstream.consumers.runtime.children import CHILD_NS, child_id
from jobstream.producers.errors import InvalidJob
from jobstream.schemas import history, wire
from jobstream.schemas.lifecycle import chain_stop, fold
from tests.support.fake_worker import JOB_TYPE, Rig

FAST = {"retry_tiers": ["20ms", "40ms"]}


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        r.close()


def _headers(m: Any) -> dict[str, str]:
    return wire.decode_headers(m.headers())


def _children(rig: Rig) -> list[Any]:
    return [m for m in rig.values(rig.topics.main) if wire.PARENT_JOB_ID in _headers(m)]


def _events(rig: Rig, job_id: str) -> list[dict[str, Any]]:
    out = []
    for m in rig.values(rig.topics.history):
        for rec in history.events(history.decode(m.value())):
            if rec["job_id"] == job_id:
                out.append(rec)
    return out


class Parent:
    """A handler: seq 0 enqueues `n` children (seqs 100..) then fails until `succeed_on`;
    children record their runs."""

    def __init__(self, n: int = 3, succeed_on: int = 3, names: bool = False) -> None:
        self.n, self.succeed_on, self.names = n, succeed_on, names
        self.lock = threading.Lock()
        self.child_runs: list[tuple[int, str, str | None, str | None]] = []
        self.returned: list[list[str]] = []

    def __call__(self, payload: dict[str, Any], ctx: Any) -> None:
        if payload["seq"] >= 100:
            with self.lock:
                self.child_runs.append((payload["seq"], ctx.job_id, ctx.parent_job_id,
                                        ctx.trace_id))
            return
        ids = [ctx.enqueue(JOB_TYPE, {"seq": 100 + i, "behaviour": "ok"},
                           name=f"c{i}" if self.names else None) for i in range(self.n)]
        with self.lock:
            self.returned.append(ids)
        if ctx.attempt < self.succeed_on:
            raise ConnectionError("not yet")


def test_child_ids_are_derived_from_the_parent_and_the_name_or_index() -> None:
    a = child_id("p1", None, 0)
    assert a == child_id("p1", None, 0) and len(a) == 32 and int(a, 16) >= 0
    assert len({a, child_id("p1", None, 1), child_id("p2", None, 0), child_id("p1", "x", 0),
                child_id("p1", "0", 0)}) == 5
    assert child_id("p1", "x", 0) == child_id("p1", "x", 7), "a name does not depend on order"
    assert child_id("p1", "x", 0) == uuid.uuid5(CHILD_NS, "p1/n:x").hex, "as documented"
    assert child_id("p1", None, 2) == uuid.uuid5(CHILD_NS, "p1/#2").hex


@pytest.mark.parametrize("mode", ["transactional", "at_least_once"])
def test_children_of_a_parent_that_fails_twice_run_once_with_its_ids(
        monkeypatch: pytest.MonkeyPatch, rigs: list[Rig], mode: str) -> None:
    h = Parent()
    rig = Rig(monkeypatch, handler=h, job=FAST, worker={"mode": mode})
    rigs.append(rig)
    pid = rig.publish(0)
    rig.start()
    rig.wait(lambda: len(h.child_runs) >= 3, "the children ran", timeout=10)
    rig.wait(rig.committed_to_end, "committed")
    assert len(h.returned) == 3, "three attempts of the parent"
    assert h.returned[0] == h.returned[1] == h.returned[2], "each run enqueues the same ids"
    kids = _children(rig)
    assert sorted(_headers(m)[wire.JOB_ID] for m in kids) == sorted(h.returned[0])
    assert sorted(r[1] for r in h.child_runs) == sorted(h.returned[0]), "each child once"
    [parent] = [m for m in rig.values(rig.topics.main) if _headers(m)[wire.JOB_ID] == pid]
    trace = wire.trace_id(_headers(parent)[wire.TRACEPARENT])
    assert all(r[2] == pid and r[3] == trace for r in h.child_runs)
    st = fold(pid, JOB_TYPE, _events(rig, pid))
    assert st.state == "succeeded" and sorted(st.children) == sorted(h.returned[0])


def test_a_dead_lettered_parent_leaves_no_child(monkeypatch: pytest.MonkeyPatch,
                                                 rigs: list[Rig]) -> None:
    h = Parent(succeed_on=99)
    rig = Rig(monkeypatch, handler=h, job={**FAST, "max_attempts": 2})
    rigs.append(rig)
    pid = rig.publish(0)
    rig.start()
    rig.wait(lambda: rig.ids(rig.topics.dlq) == [pid], "the dead letter", timeout=10)
    rig.wait(rig.committed_to_end, "committed")
    assert len(h.returned) == 2
    assert _children(rig) == [] and h.child_runs == []
    assert fold(pid, JOB_TYPE, _events(rig, pid)).children == []


def test_named_children_keep_their_ids_and_a_repeated_name_is_refused(
        monkeypatch: pytest.MonkeyPatch, rigs: list[Rig]) -> None:
    errors: list[str] = []

    def handler(payload: dict[str, Any], ctx: Any) -> None:
        if payload["seq"] >= 100:
            return
        ctx.enqueue(JOB_TYPE, {"seq": 100}, name="only")
        try:
            ctx.enqueue(JOB_TYPE, {"seq": 101}, name="only")
        except InvalidJob as e:
            errors.append(str(e))
        try:
            ctx.enqueue(JOB_TYPE, {"seq": "not a number"})
        except ValueError as e:
            errors.append(str(e))
        try:
            ctx.enqueue(JOB_TYPE, {"seq": 102}, name="~chain")
        except InvalidJob as e:
            errors.append(str(e))

    rig = Rig(monkeypatch, handler=handler)
    rigs.append(rig)
    pid = rig.publish(0)
    rig.start()
    rig.wait(lambda: len(_children(rig)) == 1, "the child")
    assert _headers(_children(rig)[0])[wire.JOB_ID] == child_id(pid, "only", 0)
    assert "already used" in errors[0] and "seq" in errors[1], errors
    assert "reserved" in errors[2], errors


def test_a_delayed_child_goes_to_the_scheduled_topic(monkeypatch: pytest.MonkeyPatch,
                                                     rigs: list[Rig]) -> None:
    def handler(payload: dict[str, Any], ctx: Any) -> None:
        if payload["seq"] == 0:
            ctx.enqueue(JOB_TYPE, {"seq": 100}, key="k9", delay="1h")

    rig = Rig(monkeypatch, handler=handler)
    rigs.append(rig)
    pid = rig.publish(0)
    rig.start()
    rig.wait(lambda: len(rig.values(rig.topics.scheduled)) == 1, "the scheduled child")
    [m] = rig.values(rig.topics.scheduled)
    h = _headers(m)
    assert h[wire.PARENT_JOB_ID] == pid and h[wire.KEY] == "k9" and wire.RUN_AT in h
    assert m.key().decode() == child_id(pid, None, 0)


def test_a_chain_hands_each_result_to_the_next_step(monkeypatch: pytest.MonkeyPatch,
                                                    rigs: list[Rig]) -> None:
    seen: list[tuple[int, str, int]] = []

    def handler(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        if payload["behaviour"].startswith("fail_until:") and ctx.attempt < int(
                payload["behaviour"].split(":")[1]):
            raise ConnectionError("middle step down")
        seen.append((payload["seq"], payload["behaviour"], ctx.attempt))
        return {"seq": payload["seq"] * 10, "unrelated": True}

    rig = Rig(monkeypatch, handler=handler, job=FAST)
    rigs.append(rig)
    rig.start()
    first = rig.publisher.publish_chain(chain(
        (JOB_TYPE, {"seq": 1}), (JOB_TYPE, {"seq": 0, "behaviour": "fail_until:3"}),
        (JOB_TYPE, {"seq": 0, "behaviour": "last"})), key="order-1")
    rig.wait(lambda: len(seen) == 3, "three steps", timeout=10)
    assert seen == [(1, "ok", 1), (10, "fail_until:3", 3), (100, "last", 1)]
    steps = [m for m in rig.values(rig.topics.main)]
    assert {m.key() for m in steps} == {b"order-1"}
    assert _headers(steps[1])[wire.PARENT_JOB_ID] == first
    assert _headers(steps[1])[wire.JOB_ID] == child_id(first, "~chain", 0), "a derived id"


def test_a_handler_starts_a_chain_with_its_own_success(monkeypatch: pytest.MonkeyPatch,
                                                       rigs: list[Rig]) -> None:
    seen: list[tuple[int, str | None]] = []

    def handler(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        seen.append((payload["seq"], ctx.parent_job_id))
        if payload["seq"] == 0:
            ctx.chain((JOB_TYPE, {"seq": 1}), (JOB_TYPE, {"seq": 0}), name="pipeline")
            if ctx.attempt < 2:
                raise ConnectionError("once")
        return {"seq": payload["seq"] + 1}

    rig = Rig(monkeypatch, handler=handler, job=FAST)
    rigs.append(rig)
    pid = rig.publish(0)
    rig.start()
    rig.wait(lambda: len(seen) == 4, "parent twice, then two steps", timeout=10)
    rig.wait(rig.committed_to_end, "committed")
    first = child_id(pid, "pipeline", 0)
    assert seen[2:] == [(1, pid), (2, first)]


def test_a_dead_lettered_step_stops_the_chain_and_says_where(
        monkeypatch: pytest.MonkeyPatch, rigs: list[Rig]) -> None:
    rig = Rig(monkeypatch, job={**FAST, "max_attempts": 1})
    rigs.append(rig)
    rig.start()
    rig.publisher.publish_chain(chain((JOB_TYPE, {"seq": 1}), (JOB_TYPE, {"seq": 2,
                                       "behaviour": "permanent"}), (JOB_TYPE, {"seq": 3})))
    rig.wait(lambda: len(rig.ids(rig.topics.dlq)) == 1, "the dead-lettered step")
    rig.wait(rig.committed_to_end, "committed")
    assert rig.runs.seqs() == {1: 1, 2: 1}, "the third step never ran"
    [dead] = rig.ids(rig.topics.dlq)
    st = fold(dead, JOB_TYPE, _events(rig, dead))
    assert st.state == "dead_lettered" and st.chain is not None
    assert chain_stop(st.chain).endswith(f"stopped at step 2 of 3 ({JOB_TYPE}); not run: "
                                         f"{JOB_TYPE}")


def test_a_result_that_does_not_fit_the_next_step_dead_letters_the_step(
        monkeypatch: pytest.MonkeyPatch, rigs: list[Rig]) -> None:
    rig = Rig(monkeypatch, handler=lambda p, c: {"seq": "ten"}, job={"max_attempts": 1})
    rigs.append(rig)
    rig.start()
    first = rig.publisher.publish_chain(chain((JOB_TYPE, {"seq": 1}), (JOB_TYPE, {})))
    rig.wait(lambda: rig.ids(rig.topics.dlq) == [first], "the first step dead-lettered")
    [m] = rig.values(rig.topics.dlq)
    msg = _headers(m)[wire.ERROR_MESSAGE]
    assert "chain step 2 of 2" in msg and "seq" in msg, msg


def test_a_chain_is_checked_before_anything_is_sent(monkeypatch: pytest.MonkeyPatch,
                                                    rigs: list[Rig]) -> None:
    rig = Rig(monkeypatch)
    rigs.append(rig)
    with pytest.raises(InvalidJob, match="unknown field"):
        rig.publisher.publish_chain(chain((JOB_TYPE, {"seq": 1}), (JOB_TYPE, {"sq": 2})))
    with pytest.raises(InvalidJob, match="at least one step"):
        chain()
    with pytest.raises(InvalidJob, match="must be JSON"):
        rig.publisher.publish_chain(chain((JOB_TYPE, {"seq": 1}), (JOB_TYPE, {"secret": b""})))
    with pytest.raises(ValueError, match="seq"):
        rig.publisher.publish_chain(chain((JOB_TYPE, {"seq": "x"}), (JOB_TYPE, {})))
    assert rig.values(rig.topics.main) == []


@pytest.mark.parametrize("mode", ["transactional", "at_least_once"])
def test_a_child_that_cannot_be_written_redoes_the_parent_with_the_same_ids(
        monkeypatch: pytest.MonkeyPatch, rigs: list[Rig], mode: str) -> None:
    from confluent_kafka import KafkaError

    h = Parent(succeed_on=1)
    rig = Rig(monkeypatch, handler=h, worker={"mode": mode})
    rigs.append(rig)
    pid = rig.publish(0)
    rig.cluster.fail_next_produce(rig.topics.main, KafkaError.MSG_SIZE_TOO_LARGE)
    rig.start()
    rig.wait(lambda: len({r[1] for r in h.child_runs}) == 3, "the children ran", timeout=10)
    rig.wait(rig.committed_to_end, "committed")
    assert len(h.returned) == 2, "the parent was redone"
    assert h.returned[0] == h.returned[1]
    assert sorted({r[1] for r in h.child_runs}) == sorted(h.returned[0])
    assert all(r[2] == pid for r in h.child_runs)


def test_enqueue_after_the_handler_returned_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                        rigs: list[Rig]) -> None:
    kept: list[Any] = []

    def handler(payload: dict[str, Any], ctx: Any) -> None:
        kept.append(ctx)

    rig = Rig(monkeypatch, handler=handler)
    rigs.append(rig)
    rig.publish(0)
    rig.start()
    rig.wait(rig.committed_to_end, "committed")
    with pytest.raises(InvalidJob, match="after the job's attempt ended"):
        kept[0].enqueue(JOB_TYPE, {"seq": 1})


def test_a_child_goes_to_the_lane_it_names(monkeypatch: pytest.MonkeyPatch,
                                           rigs: list[Rig]) -> None:
    """ctx.enqueue(priority=) as publish(priority=): the lane's topic and its js-priority
    header; an unknown lane raises in the handler, naming the lanes."""
    refused: list[str] = []

    def handler(payload: dict[str, Any], ctx: Any) -> None:
        if payload["seq"] == 0:
            ctx.enqueue(JOB_TYPE, {"seq": 100}, priority="high")
            try:
                ctx.enqueue(JOB_TYPE, {"seq": 101}, priority="urgent")
            except InvalidJob as e:
                refused.append(str(e))

    rig = Rig(monkeypatch, handler=handler, job={"priorities": ["high", "default"]})
    rigs.append(rig)
    pid = rig.publish(0)
    rig.start()
    high = f"{rig.topics.main}.priority.high"
    rig.wait(lambda: len(rig.values(high)) == 1, "the child in the high lane")
    [m] = rig.values(high)
    h = _headers(m)
    assert h[wire.PARENT_JOB_ID] == pid and h[wire.PRIORITY] == "high"
    assert refused and "high, default" in refused[0], refused
