"""Issue 24, fair sharing inside a lane (`fair_by`, `max_in_flight_per_tenant`): the queue
alone (consumers/runtime/lanes.py) and a real Worker on the in-memory Kafka."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from jobstream.config.settings import JobTypeSettings
from jobstream.consumers.runtime.lanes import FairQueue
from tests.support.fake_worker import JOB_TYPE, Rig


def test_tenants_take_turns_and_each_keeps_its_order() -> None:
    q: FairQueue[str] = FairQueue(Counter())
    for i in range(100):
        q.append("big", f"b{i}")
    for t in ("s1", "s2"):
        for i in range(2):
            q.append(t, f"{t}-{i}")
    got = [q.pop() for _ in range(8)]
    assert [x[1] for x in got if x] == ["b0", "s1-0", "s2-0", "b1", "s1-1", "s2-1", "b2", "b3"]
    assert len(q) == 96


def test_a_tenant_at_its_limit_waits_and_the_others_go_on() -> None:
    running: Counter[str] = Counter()
    q: FairQueue[int] = FairQueue(running, limit=2)
    for i in range(5):
        q.append("big", i)
    q.append("small", 99)
    running["big"] = 2
    assert q.ready() and q.pop() == ("small", 99)
    assert not q.ready() and q.pop() is None  # big is at its limit
    running["big"] = 1
    assert q.pop() == ("big", 0)


def test_keep_drops_the_jobs_of_partitions_gone() -> None:
    q: FairQueue[int] = FairQueue(Counter())
    for i in range(6):
        q.append(f"t{i % 2}", i)
    q.keep(lambda x: x % 3 != 0)
    assert len(q) == 4 and sorted(x[1] for x in iter(q.pop, None)) == [1, 2, 4, 5]


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"fair_by": "tenant"}, "fair_by is `key` or `header:<name>`"),
    ({"fair_by": "header:"}, "fair_by is `key`"),
    ({"max_in_flight_per_tenant": 2}, "needs fair_by"),
])
def test_bad_fair_sharing_settings_are_clear_errors(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        JobTypeSettings(**kwargs)


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    r = Rig(monkeypatch, partitions=1, job={"fair_by": "header:tenant"},
            worker={"max_in_flight": 1, "max_buffered": 500})
    yield r
    r.close()


def test_small_tenants_are_not_kept_behind_a_big_tenants_burst(rig: Rig) -> None:
    for i in range(200):
        rig.publisher.publish(JOB_TYPE, {"seq": i, "behaviour": "ok"}, key=f"b{i}",
                              headers={"tenant": "big"})
    for t in range(5):
        for i in range(2):
            rig.publisher.publish(JOB_TYPE, {"seq": 1000 + 10 * t + i, "behaviour": "ok"},
                                  key=f"s{t}-{i}", headers={"tenant": f"small{t}"})
    rig.start()
    rig.wait(lambda: len(rig.runs.log) == 210, "every job ran", timeout=10)
    order = [s for s, _ in rig.runs.log]
    last_small = max(order.index(1000 + 10 * t + i) for t in range(5) for i in range(2))
    assert last_small < 40, order[:40]  # FIFO: after all 200 of the big tenant
    assert [s for s in order if s < 1000] == list(range(200))


def test_the_per_tenant_limit_holds_and_frees_its_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each ended job (succeeded, retried, dead-lettered) frees its tenant's slot: a slot that
    leaked would stall the tenant for good, and this run would not finish."""
    import threading
    import time as _time

    lock = threading.Lock()
    running: Counter[str] = Counter()
    most: Counter[str] = Counter()
    succeeded: set[int] = set()

    def handler(payload: dict[str, Any], ctx: Any) -> None:
        t = ctx.headers["tenant"]
        with lock:
            running[t] += 1
            most[t] = max(most[t], running[t])
        try:
            _time.sleep(0.002)
            if payload["behaviour"] == "fail_once" and ctx.attempt == 1:
                raise ConnectionError("transient")
            if payload["behaviour"] == "permanent":
                from jobstream.consumers.errors import PermanentError

                raise PermanentError("bad")
            with lock:
                succeeded.add(payload["seq"])
        finally:
            with lock:
                running[t] -= 1

    r = Rig(monkeypatch, partitions=2, handler=handler,
            job={"fair_by": "header:tenant", "max_in_flight_per_tenant": 2,
                 "retry_tiers": ["1s"], "max_attempts": 2},
            worker={"max_in_flight": 8})
    try:
        behaviours = ["ok", "fail_once", "permanent", "ok"]
        for i in range(60):
            r.publisher.publish(JOB_TYPE, {"seq": i, "behaviour": behaviours[i % 4]},
                                key=f"k{i}", headers={"tenant": f"t{i % 3}"})
        r.start()
        r.wait(r.committed_to_end, "every job finished", timeout=15)
        r.wait(lambda: len(r.cluster.records(r.topics.dlq)) == 15, "the dead letters")
        r.wait(lambda: len(succeeded) == 45, "45 successes", timeout=15)
        assert max(most.values()) <= 2 and min(most.values()) == 2, most
        gate = r.workers[0].lanes
        # The handler counted its success before it returned: its slot frees just after.
        r.wait(lambda: all(n == 0 for tl in gate.types.values() for n in tl.running.values()),
               "every tenant's slots freed", timeout=5)
    finally:
        r.close()
