"""The worker's skip of a cancelled job (issue 21), on the in-memory Kafka: a `cancelled` ledger
entry (producers/cancel.py writes it; here the test writes it directly) read at the restore or
by the ledger tail afterwards makes the worker skip the job, from T or from a retry tier, with
outcome `cancelled`: counted, one history record, offset committed, handler never run. And the
fence the canceller waits for: the tail commits how far it read, per owned source partition."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from jobstream.consumers.runtime.ledger_tail import fence_group
from jobstream.schemas import history
from jobstream.schemas.ledger_entry import cancel_key, decode_entry, encode_cancel
from jobstream.schemas.partitioner import partition_for
from tests.support.fake_worker import JOB_TYPE, Rig


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        r.close()


@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch, rigs: list[Rig]):  # type: ignore[no-untyped-def]
    def build(**kwargs: Any) -> Rig:
        r = Rig(monkeypatch, **kwargs)
        rigs.append(r)
        return r

    return build


def _part(rig: Rig, seq: int) -> int:
    return partition_for(f"k{seq}".encode(), len(rig.cluster.topics[rig.topics.main].partitions))


def _cancel(rig: Rig, seq: int, job_id: str) -> int:
    """Write a cancel entry the way producers/cancel.py does; its ledger offset."""
    p = _part(rig, seq)
    prod = rig.cluster.producer({})
    prod.produce(rig.topics.ledger, encode_cancel(int(time.time() * 1000), 0, "op@host"),
                 cancel_key(job_id).encode(), partition=p)
    prod.flush(5)
    return rig.cluster.watermarks(rig.topics.ledger, p)[1] - 1


def _history(rig: Rig, job_id: str) -> list[dict[str, Any]]:
    out = []
    for m in rig.values(rig.topics.history):
        for rec in history.events(history.decode(m.value())):
            if rec["job_id"] == job_id:
                out.append(rec)
    return out


def _cancelled_count(rig: Rig) -> float:
    return float(rig.workers[0].metrics.jobs.labels(JOB_TYPE, "cancelled")._value.get())


def _succeeded_ids(rig: Rig) -> set[str]:
    out = set()
    for m in rig.values(rig.topics.ledger):
        entry = decode_entry(m.value()) if m.value() else None
        if entry is not None and entry["status"] == "succeeded":
            out.add(m.key().decode())
    return out


def test_a_job_cancelled_before_the_worker_restored_its_ledger_is_skipped(make) -> None:
    rig = make()
    jid = rig.publish(0)
    other = rig.publish(1)
    _cancel(rig, 0, jid)
    rig.start()
    rig.wait(rig.committed_to_end, "offsets committed to the end")
    assert rig.runs.seqs() == {1: 1}  # the cancelled job's handler never ran
    rig.wait(lambda: [r.get("outcome") for r in _history(rig, jid)] == ["cancelled"],
             "one cancelled history record")
    assert _cancelled_count(rig) == 1
    assert _succeeded_ids(rig) == {other}


def test_a_cancel_written_after_the_restore_reaches_a_job_queued_behind_a_slow_one(make) -> None:
    # One thread: job 1 waits (fetched, in the executor's queue) behind the held job 0.
    rig = make(worker={"max_in_flight": 1}, partitions=1)
    rig.runs.hold.clear()
    slow = rig.publish(0, "held")
    queued = rig.publish(1)
    w = rig.start()
    rig.wait(lambda: rig.runs.running == 1, "the slow job running")
    _cancel(rig, 1, queued)
    rig.wait(lambda: w.ledger.tail.read == 1, "the tail reading the cancel")
    rig.runs.hold.set()
    rig.wait(rig.committed_to_end, "offsets committed to the end")
    assert rig.runs.seqs() == {0: 1}
    assert [r.get("outcome") for r in _history(rig, queued)] == ["cancelled"]
    assert _succeeded_ids(rig) == {slow}
    assert _cancelled_count(rig) == 1


def test_a_job_waiting_in_a_retry_tier_is_skipped_when_it_comes_due(make) -> None:
    rig = make()
    jid = rig.publish(0, "fail_until:3")
    w = rig.start()
    tier = rig.topics.retries[0]
    rig.wait(lambda: rig.ids(tier) == [jid], "the retry record")
    _cancel(rig, 0, jid)
    rig.wait(lambda: w.ledger.tail.read == 1, "the tail reading the cancel")
    rig.wait(lambda: any(r.get("outcome") == "cancelled" for r in _history(rig, jid)),
             "the skip in the tier", timeout=10)
    time.sleep(0.2)
    assert rig.runs.seqs() == {0: 1}  # the first attempt only
    assert [r["outcome"] for r in _history(rig, jid)] == ["retried", "cancelled"]
    assert rig.ids(rig.topics.retries[1]) == [] and rig.ids(rig.topics.dlq) == []
    assert _cancelled_count(rig) == 1


def test_the_tail_fences_each_owned_source_partition_past_the_cancel(make) -> None:
    rig = make(partitions=1)
    rig.publish(0)
    w = rig.start()
    rig.wait(rig.committed_to_end, "the job done")
    at = _cancel(rig, 0, "not-a-job-yet")
    rig.wait(lambda: w.ledger.tail.read == 1, "the tail reading the cancel")

    def fenced() -> bool:
        c = rig.cluster.committed(fence_group("g"))
        return all(c.get((t, 0), -1) > at for t in rig.topics.consumed)

    rig.wait(fenced, "the fence past the cancel on T and every tier")


def test_a_job_cancelled_while_another_worker_is_down_stays_cancelled(make) -> None:
    """A cancel is an entry in the ledger, not a message to a worker: a worker that starts
    later restores it with the rest."""
    rig = make()
    jid = rig.publish(0)
    rig.start()
    rig.wait(rig.committed_to_end, "the first job done")
    rig.stop()
    again = rig.publish(2)
    _cancel(rig, 2, again)
    rig.start()
    rig.wait(rig.committed_to_end, "the second job taken")
    assert rig.runs.seqs() == {0: 1}
    assert _succeeded_ids(rig) == {jid}
