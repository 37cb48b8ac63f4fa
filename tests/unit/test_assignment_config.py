"""worker.assignment -> the consumer's group-protocol settings."""

from __future__ import annotations

import pytest

from jobstream.config.kafka import group_config
from jobstream.config.settings import Assignment, SettingsError, load_settings


def _ws(**worker: object):
    return load_settings(worker=worker).worker


def test_default_is_range_on_the_classic_protocol() -> None:
    ws = _ws()
    assert ws.assignment is Assignment.RANGE
    assert group_config(ws) == {
        "partition.assignment.strategy": "range",
        "session.timeout.ms": 10_000,
    }


def test_cooperative_sticky_keeps_the_session_setting() -> None:
    conf = group_config(_ws(assignment="cooperative-sticky", session_timeout_ms=7000))
    assert conf == {
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": 7000,
    }


def test_consumer_protocol_leaves_the_session_to_the_broker() -> None:
    conf = group_config(_ws(assignment="consumer-protocol"))
    # librdkafka refuses session.timeout.ms and partition.assignment.strategy with it.
    assert conf == {"group.protocol": "consumer", "group.remote.assignor": "range"}


def test_unknown_assignment_is_refused_by_name() -> None:
    with pytest.raises(SettingsError) as e:
        _ws(assignment="sticky")
    assert "worker.assignment" in str(e.value)
    assert "consumer-protocol" in str(e.value)
