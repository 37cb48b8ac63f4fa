"""Contract of the in-memory Kafka (tests/support/fake_kafka.py), issue 28: each scenario
(tests/support/kafka_scenarios.py, kafka_group_scenarios.py) runs twice, on the real broker
and on the fake, and returns a plain dict of what it observed (topic and transactional ids by
logical name, errors by code and flags, timestamps by type). The fake must observe exactly
what Kafka does, so unit tests that drive the runtime against it cannot drift from the broker
they stand in for."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.kafka_backends import Backend, FakeBackend, RealBackend
from tests.support.kafka_group_scenarios import (
    consumer_protocol_join,
    cooperative_join,
    handover,
    seek_and_pause,
)
from tests.support.kafka_scenarios import (
    fencing,
    offsets_in_transaction,
    oversized,
    produce_and_consume,
    transactions_and_watermarks,
)

Scenario = Callable[[Backend], dict[str, Any]]

SCENARIOS: list[Scenario] = [
    produce_and_consume,
    transactions_and_watermarks,
    offsets_in_transaction,
    seek_and_pause,
    handover,
    cooperative_join,
    consumer_protocol_join,
    fencing,
    oversized,
]


@pytest.fixture
def backends(bootstrap: str, unique: str) -> Iterator[dict[str, Backend]]:
    made: dict[str, Backend] = {"real": RealBackend(bootstrap, unique), "fake": FakeBackend(unique)}
    yield made
    for backend in made.values():
        backend.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_fake_kafka_observes_what_kafka_does(
    scenario: Scenario, backends: dict[str, Backend]
) -> None:
    """Issue 28: the same scenario body runs on the real broker and on the fake; the fake's
    observations must equal Kafka's, and the run on Kafka must not have hit a deadline (an
    observation of nothing would compare equal to a fake that does nothing)."""
    observed = {name: scenario(b) for name, b in backends.items()}
    assert "timed out" not in repr(observed["real"]), observed["real"]
    assert observed["fake"] == observed["real"]
