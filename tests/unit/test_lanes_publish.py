"""Issue 24: publishing to a priority lane, and the lane kept through a retry (in-memory
Kafka, tests/support/fake_worker.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobstream.producers.errors import InvalidJob
from jobstream.producers.lanes import UnknownLane, lane_destination
from jobstream.schemas import wire
from tests.support.fake_worker import JOB_TYPE, Rig

LANES = {"priorities": ["high", "default", "low"]}


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    r = Rig(monkeypatch, job=LANES)
    yield r
    r.close()


def _headers(rig: Rig, topic: str) -> list[dict[str, bytes]]:
    return [dict(m.headers() or []) for m in rig.cluster.records(topic)]


def test_a_job_goes_to_its_lane_topic_with_its_lane_header(rig: Rig) -> None:
    rig.publisher.publish(JOB_TYPE, {"seq": 1, "behaviour": "ok"}, priority="high")
    rig.publisher.publish(JOB_TYPE, {"seq": 2, "behaviour": "ok"}, priority="default")
    rig.publisher.publish(JOB_TYPE, {"seq": 3, "behaviour": "ok"})
    assert [h[wire.PRIORITY] for h in _headers(rig, "t.echo.priority.high")] == [b"high"]
    main = _headers(rig, "t.echo")
    # one with its lane named, one without (records of two partitions: any order)
    assert sorted(h.get(wire.PRIORITY) or b"" for h in main) == [b"", b"default"]


def test_an_unknown_lane_is_a_clear_error_naming_the_lanes(rig: Rig) -> None:
    with pytest.raises(UnknownLane, match="unknown priority lane 'urgent'; its lanes are "
                       "high, default, low"):
        rig.publisher.publish(JOB_TYPE, {"seq": 1, "behaviour": "ok"}, priority="urgent")
    assert issubclass(UnknownLane, InvalidJob)


def test_a_job_type_without_lanes_refuses_a_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    r = Rig(monkeypatch)
    try:
        with pytest.raises(UnknownLane, match="no priority lanes configured"):
            r.publisher.publish(JOB_TYPE, {"seq": 1, "behaviour": "ok"}, priority="high")
        r.publisher.publish(JOB_TYPE, {"seq": 1, "behaviour": "ok"}, priority="default")
        assert wire.PRIORITY not in _headers(r, "t.echo")[0]
    finally:
        r.close()


def test_a_delayed_job_keeps_its_lane_header_on_the_scheduled_topic(rig: Rig) -> None:
    rig.publisher.publish(JOB_TYPE, {"seq": 1, "behaviour": "ok"}, priority="low", delay="1h")
    (h,) = _headers(rig, "t.echo.scheduled")
    assert h[wire.PRIORITY] == b"low"


def test_a_retried_job_keeps_its_lane(rig: Rig) -> None:
    jid = rig.publisher.publish(JOB_TYPE, {"seq": 1, "behaviour": "fail_until:9"},
                                key="k1", priority="low")
    rig.start()
    tier = rig.topics.retries[0]
    rig.wait(lambda: rig.ids(tier) == [jid], "the retry record")
    assert _headers(rig, tier)[0][wire.PRIORITY] == b"low"


def test_lane_destination_only_to_a_lane_that_exists() -> None:
    lanes = ("t.priority.high", "t")
    assert lane_destination("t", lanes, [(wire.PRIORITY, b"high")]) == "t.priority.high"
    assert lane_destination("t", lanes, [(wire.PRIORITY, b"gone")]) == "t"
    assert lane_destination("t", lanes, []) == "t"
