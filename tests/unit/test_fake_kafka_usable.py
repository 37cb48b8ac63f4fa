"""The project's own Kafka code runs unchanged against the in-memory Kafka
(tests/support/fake_kafka.py), issue 28: the real Committer given fake clients, as the
runtime will be; the Publisher, the ledger restore and the topic plan, which build their own
clients, through patch_clients. Milliseconds each (block_scale 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobstream.config.durations import now_ms
from jobstream.config.settings import Mode, Settings
from jobstream.consumers.ops.topic_plan import TopicPlanError, apply, describe, full_plan
from jobstream.consumers.runtime.commit import Committer, ProducerFenced
from jobstream.consumers.runtime.ledger import restore_partitions
from jobstream.producers import Publisher
from jobstream.schemas import wire
from jobstream.schemas.ledger_entry import encode_entry
from tests.support.fake_kafka import FakeCluster, FakeConsumer, patch_clients

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


@pytest.fixture
def cluster() -> FakeCluster:
    c = FakeCluster(block_scale=0)
    c.create_topic("t", partitions=2)
    return c


def member(cluster: FakeCluster) -> FakeConsumer:
    """A worker's consumer, joined and assigned both partitions."""
    c = cluster.consumer({"group.id": "g", "auto.offset.reset": "earliest",
                          "enable.auto.commit": False, "isolation.level": "read_committed"})
    c.subscribe(["t"])
    return c


def test_the_real_committer_commits_a_transaction_through_the_fake(cluster: FakeCluster) -> None:
    """consumers.runtime.commit.Committer, as the worker builds it: begin before the first produce,
    then offsets and records become visible together."""
    cluster.producer({}).produce("t", b"job", partition=0)
    consumer = member(cluster)
    msg = consumer.poll(0)
    assert msg is not None and msg.value() == b"job"
    producer = cluster.producer({"transactional.id": "w"})
    committer = Committer(Mode.TRANSACTIONAL, consumer, producer, timeout_s=1)  # type: ignore[arg-type]
    committer.before_produce()
    producer.produce("t", b"ledger entry", partition=1)
    assert cluster.records("t", 1) == [], "not visible before the commit"
    committer.commit({("t", 0): msg.offset() + 1})
    assert not committer.in_txn
    assert cluster.committed("g") == {("t", 0): 1}
    assert [m.value() for m in cluster.records("t", 1)] == [b"ledger entry"]
    assert cluster.watermarks("t", 1) == (0, 2), "the record and its commit marker"


def test_the_committer_sees_the_fake_fencing_as_fencing(cluster: FakeCluster) -> None:
    consumer = member(cluster)
    consumer.poll(0)
    producer = cluster.producer({"transactional.id": "w"})
    committer = Committer(Mode.TRANSACTIONAL, consumer, producer, timeout_s=1)  # type: ignore[arg-type]
    committer.before_produce()
    producer.produce("t", b"zombie", partition=0)
    cluster.producer({"transactional.id": "w"}).init_transactions(1)
    with pytest.raises(ProducerFenced):
        committer.commit({("t", 0): 0})
    assert committer.fenced and cluster.records("t") == []


def test_the_publisher_and_the_ledger_restore_run_against_the_fake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """patch_clients for code that builds its own clients: a job published through
    producers.Publisher, ledger entries restored by consumers.ledger (an aborted one left
    out), all in memory."""
    cluster = FakeCluster(block_scale=0)
    cluster.create_topic("t.echo", 3)
    cluster.create_topic("t.echo.ledger", 3)
    patch_clients(
        monkeypatch,
        cluster,
        ["jobstream.producers.publisher", "jobstream.producers.limits",
         "jobstream.consumers.runtime.clients", "jobstream.consumers.runtime.ledger"],
    )
    settings = Settings.model_validate({
        "kafka": {"bootstrap_servers": "fake:9092"},
        "schema_dirs": [str(SCHEMAS)],
        "jobs": {"test.echo": {"topic": "t.echo"}},
    })
    with Publisher(settings) as pub:
        job_id = pub.publish("test.echo", {"seq": 1}, key="k-1")
    [m] = cluster.records("t.echo")
    assert m.key() == b"k-1" and dict(m.headers())[wire.JOB_ID] == job_id.encode()
    p = cluster.producer({"transactional.id": "w"})
    p.init_transactions(1)
    for jid, commit in (("done", True), ("aborted", False)):
        p.begin_transaction()
        p.produce("t.echo.ledger", encode_entry("succeeded", now_ms(), 1, "w"), jid, partition=2)
        (p.commit_transaction if commit else p.abort_transaction)(1)
    views = restore_partitions(settings, [("t.echo.ledger", 2)], ttl_ms=60_000)
    view = views[("t.echo.ledger", 2)]
    assert "done" in view and "aborted" not in view and view.read_to == 4


def test_the_topic_plan_applies_to_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    """consumers.topics through the fake admin client: create, find nothing to do, then
    realign a drifted config, and refuse a partition count that differs."""
    cluster = FakeCluster(block_scale=0)
    patch_clients(monkeypatch, cluster)  # the default list (every module that builds clients)
    settings = Settings.model_validate({
        "kafka": {"bootstrap_servers": "fake:9092"},
        "schema_dirs": [str(SCHEMAS)],
        "jobs": {"test.echo": {"topic": "t.echo", "partitions": 3}},
    })
    plan = full_plan(settings, ["test.echo"])
    assert {s.action for s in apply(settings, plan)} == {"created"}
    assert len(cluster.topics["t.echo.ledger"].partitions) == 3
    assert {s.action for s in apply(settings, plan)} == {"ok"}
    cluster.topics["t.echo.ledger"].config["cleanup.policy"] = "delete"
    updated = [s.spec.name for s in apply(settings, plan) if s.action == "updated"]
    assert updated == ["t.echo.ledger"] and {s.action for s in describe(settings, plan)} == {"ok"}
    cluster.delete_topic("t.echo.dlq")
    cluster.create_topic("t.echo.dlq", 5)
    with pytest.raises(TopicPlanError, match=r"t\.echo\.dlq: has 5 partitions, plan says"):
        apply(settings, plan)
