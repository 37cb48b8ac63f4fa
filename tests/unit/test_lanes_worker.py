"""Issue 24: a real Worker with priority lanes on the in-memory Kafka: high jobs start ahead of
a low backlog, order holds within a lane and key, a rebalance keeps every job."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobstream.schemas import wire
from tests.support.fake_worker import JOB_TYPE, Rig

LANES = {"priorities": ["high", "default", "low"]}


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        r.close()


def _rig(monkeypatch: pytest.MonkeyPatch, rigs: list[Rig], **worker: object) -> Rig:
    r = Rig(monkeypatch, job=LANES, partitions=1,
            worker={"max_in_flight": 1, "max_buffered": 200, **worker})
    rigs.append(r)
    return r


def _publish(rig: Rig, seq: int, lane: str, key: str | None = None,
             behaviour: str = "ok") -> None:
    rig.publisher.publish(JOB_TYPE, {"seq": seq, "behaviour": behaviour},
                          key=key or f"k{seq}", priority=lane)


def test_high_jobs_start_ahead_of_a_low_backlog(monkeypatch: pytest.MonkeyPatch,
                                                rigs: list[Rig]) -> None:
    rig = _rig(monkeypatch, rigs)
    for i in range(60):
        _publish(rig, i, "low")
    for i in range(8):
        _publish(rig, 1000 + i, "high")
    rig.start()
    rig.wait(lambda: len(rig.runs.log) == 68, "every job ran", timeout=10)
    order = [s for s, _ in rig.runs.log]
    last_high = max(order.index(1000 + i) for i in range(8))
    assert last_high < 15, order[:20]
    assert [s for s in order if s < 1000] == list(range(60)), "low in its own order"
    rig.wait(rig.committed_to_end, "offsets committed")


def test_without_lanes_high_would_wait_behind_the_backlog(monkeypatch: pytest.MonkeyPatch,
                                                         rigs: list[Rig]) -> None:
    """The test above can fail: the same jobs on one lane-less topic run in offset order."""
    r = Rig(monkeypatch, partitions=1, worker={"max_in_flight": 1, "max_buffered": 200})
    rigs.append(r)
    for i in range(60):
        r.publish(i)
    for i in range(8):
        r.publish(1000 + i)
    r.start()
    r.wait(lambda: len(r.runs.log) == 68, "every job ran", timeout=10)
    assert [s for s, _ in r.runs.log].index(1000) == 60


def test_one_key_keeps_its_order_within_a_lane(monkeypatch: pytest.MonkeyPatch,
                                               rigs: list[Rig]) -> None:
    rig = _rig(monkeypatch, rigs, max_in_flight=4)
    for i in range(30):
        _publish(rig, i, "low", key="same")
        _publish(rig, 100 + i, "high", key="same")
    rig.start()
    rig.wait(lambda: len(rig.runs.log) == 60, "every job ran", timeout=10)
    order = [s for s, _ in rig.runs.log]
    assert [s for s in order if s < 100] == list(range(30))
    assert [s for s in order if s >= 100] == list(range(100, 130))


def test_a_retry_comes_back_in_its_lane(monkeypatch: pytest.MonkeyPatch,
                                        rigs: list[Rig]) -> None:
    rig = _rig(monkeypatch, rigs)
    _publish(rig, 1, "high", behaviour="fail_until:2")
    rig.start()
    rig.wait(lambda: len(rig.runs.log) == 2, "the retry ran", timeout=10)
    w = rig.workers[0]
    assert w.metrics.lane_started_jobs.labels(JOB_TYPE, "high")._value.get() == 2
    (h,) = [dict(m.headers() or []) for m in rig.cluster.records(rig.topics.retries[0])]
    assert h[wire.PRIORITY] == b"high"


def test_a_second_worker_joining_loses_no_job(monkeypatch: pytest.MonkeyPatch,
                                              rigs: list[Rig]) -> None:
    r = Rig(monkeypatch, job=LANES, partitions=2,
            worker={"max_in_flight": 2, "max_buffered": 20})
    rigs.append(r)
    for i in range(200):
        _publish(r, i, "low", behaviour="sleep_ms:1")
    r.start()
    r.wait(lambda: len(r.runs.log) > 20, "some low jobs ran")
    for i in range(20):
        _publish(r, 1000 + i, "high")
    r.start()
    r.wait(lambda: len(r.runs.seqs()) == 220, "every job ran", timeout=20)
    r.wait(r.committed_to_end, "offsets committed")
