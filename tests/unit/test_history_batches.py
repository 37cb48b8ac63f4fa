"""T.history in batches (consumers/runtime/history.py), on the in-memory Kafka: the events of
one stream from one pass of the loop go out as one record. A record per job cost a no-op worker
a quarter of its speed (bench 1: 0.60-0.74 of `history: false`); batched, 0.92-0.96. Each job
still has exactly its own events, in order, and every partition's chain verifies."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from jobstream.consumers.runtime import history as writer
from jobstream.schemas import history
from jobstream.schemas.chain import Verifier
from tests.support.fake_worker import Rig


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    r = Rig(monkeypatch, worker={"max_in_flight": 64, "commit_interval_ms": 200})
    yield r
    r.close()


def _by_partition(rig: Rig) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for m in rig.values(rig.topics.history):
        out.setdefault(m.partition(), []).append(m)
    return out


def test_many_jobs_share_records_and_each_keeps_its_own_events(rig: Rig) -> None:
    ids = {rig.publish(i, "fail_until:2" if i % 10 == 0 else "ok"): i for i in range(300)}
    rig.start()
    rig.wait(lambda: len(rig.runs.log) >= 330 and rig.committed_to_end(), "all jobs run",
             timeout=20)
    rig.stop()
    events: dict[str, list[tuple[int, str]]] = {}
    records = batches = 0
    for p, msgs in _by_partition(rig).items():
        v = Verifier()
        for m in msgs:
            rec = history.decode(m.value())
            records += 1
            if rec["event"] == history.BATCH:
                batches += 1
                assert m.key() == rec["chain_stream"].encode()  # keyed by its stream
            for ev in history.events(rec):
                assert ev["source"]["partition"] == p
                events.setdefault(ev["job_id"], []).append((ev["attempt"], ev["outcome"]))
            v.feed(m.offset(), json.loads(m.value()))
        v.finish()
        assert v.ok, (p, v.problems)
    assert set(events) == set(ids)
    for jid, seen in events.items():
        want = [(1, "retried"), (2, "succeeded")] if ids[jid] % 10 == 0 else [(1, "succeeded")]
        assert sorted(seen) == want, (ids[jid], seen)
    assert batches and records < 330, f"{records} records for 330 events: nothing batched"


def test_a_batch_is_cut_at_its_size_limit(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "BATCH_MAX_EVENTS", 3)
    for i in range(40):
        rig.publish(i, key="same")  # one partition: one stream
    rig.start()
    rig.wait(lambda: len(rig.runs.log) >= 40 and rig.committed_to_end(), "all jobs run",
             timeout=20)
    rig.stop()
    sizes = [len(history.events(history.decode(m.value())))
             for msgs in _by_partition(rig).values() for m in msgs]
    assert sum(sizes) == 40 and max(sizes) <= 3 and len(sizes) >= 14, sizes


def test_a_steady_trickle_shares_records(rig: Rig) -> None:
    """At a steady, moderate rate a pass of the loop sees one job: written at the end of each
    pass, every event was a record (and a produce) of its own. Events wait up to LINGER_S."""
    w = rig.start()
    rig.wait(lambda: w.health.ready, "ready", timeout=10)
    for i in range(60):
        rig.publish(i, key="same")  # one partition: one stream
        time.sleep(0.002)
    rig.wait(lambda: len(rig.runs.log) >= 60 and rig.committed_to_end(), "all jobs run",
             timeout=20)
    rig.stop()
    sizes = [len(history.events(history.decode(m.value())))
             for msgs in _by_partition(rig).values() for m in msgs]
    assert sum(sizes) == 60 and len(sizes) <= 40, sizes


def test_a_lone_event_is_written_without_waiting_for_a_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A quiet worker's last events do not wait for the next commit."""
    r = Rig(monkeypatch, worker={"commit_interval_ms": 60_000, "mode": "at_least_once"})
    try:
        r.publish(0)
        r.start()
        r.wait(lambda: len(r.values(r.topics.history)) == 1, "its history record", timeout=5)
        assert not r.committed_to_end()  # written by the linger, not by a commit
    finally:
        r.close()


def test_an_event_with_a_result_does_not_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    """`jobs wait` returns once the ledger says `succeeded` and reads the result from history:
    an attempt that returned a result is written at the end of its pass, as before the
    linger."""
    monkeypatch.setattr(writer, "LINGER_S", 60.0)
    r = Rig(monkeypatch, worker={"commit_interval_ms": 60_000, "mode": "at_least_once"},
            handler=lambda payload, ctx: {"n": payload["seq"]})
    try:
        r.publish(0)
        r.start()
        r.wait(lambda: len(r.values(r.topics.history)) == 1, "its history record", timeout=5)
        rec = history.events(history.decode(r.values(r.topics.history)[0].value()))[0]
        assert rec["outcome"] == "succeeded" and rec["result"] == {"n": 0}
    finally:
        r.close()
