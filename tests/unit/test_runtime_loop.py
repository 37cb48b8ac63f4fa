"""The worker's loop (consumers/runtime/) against the in-memory Kafka (tests/support/): each
scenario runs a real Worker on a fake cluster and reads the books from the cluster. Issue 28:
rebalances mid-interval, aborts and rewinds, fencing, lost partitions, strict-order retries,
the DLQ guard, the breaker, delivery failures, shutdown, readiness, both commit modes, hooks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError

from jobstream.consumers.errors import ExitCode
from tests.support.fake_worker import Rig


@pytest.fixture
def rigs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        r.close()


@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch, rigs: list[Rig]):  # type: ignore[no-untyped-def]
    def build(**kwargs: object) -> Rig:
        r = Rig(monkeypatch, **kwargs)  # type: ignore[arg-type]
        rigs.append(r)
        return r

    return build


def test_a_job_runs_once_and_its_ledger_entry_commits_with_its_offset(make) -> None:
    rig = make()
    ids = [rig.publish(i) for i in range(5)]
    rig.start()
    rig.wait(rig.committed_to_end, "offsets committed to the end")
    assert sorted(rig.ledger_keys()) == sorted(ids)
    assert rig.runs.seqs() == {i: 1 for i in range(5)}
    assert rig.stop() == ExitCode.STOPPED
