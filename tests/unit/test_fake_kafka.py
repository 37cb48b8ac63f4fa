"""The in-memory Kafka itself (tests/support/fake_kafka.py), issue 28: what the contract test
(tests/integration/test_fake_kafka_contract.py) cannot drive on a real broker at will:
rebalances the test decides, lost sessions, injected errors and outages. No waits: the
cluster's block_scale is 0, so each test takes milliseconds."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from jobstream.schemas.partitioner import murmur2
from tests.support.fake_kafka import FakeCluster, FakeConsumer


@pytest.fixture
def cluster() -> FakeCluster:
    c = FakeCluster(block_scale=0)
    c.create_topic("t", partitions=2)
    return c


def code(e: pytest.ExceptionInfo[KafkaException]) -> int:
    return int(e.value.args[0].code())


class Events:
    """Records a consumer's rebalance callbacks as (kind, partitions)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[int]]] = []

    def subscribe(self, c: FakeConsumer, lost: bool = True) -> None:
        def note(kind: str) -> Any:
            return lambda _c, ps: self.seen.append((kind, [p.partition for p in ps]))

        kw = {"on_lost": note("lost")} if lost else {}
        c.subscribe(["t"], on_assign=note("assign"), on_revoke=note("revoke"), **kw)


def member(cluster: FakeCluster, **conf: Any) -> tuple[FakeConsumer, Events]:
    c = cluster.consumer({"group.id": "g", "auto.offset.reset": "earliest",
                          "enable.auto.commit": False, **conf})
    ev = Events()
    ev.subscribe(c)
    return c, ev


def test_records_keep_order_keys_and_headers_and_reports_wait_for_poll(
    cluster: FakeCluster,
) -> None:
    p = cluster.producer({})
    reports: list[Any] = []
    for i in range(4):
        p.produce("t", f"v{i}", "k", partition=1, headers={"n": str(i)},
                  on_delivery=lambda e, m: reports.append((e, m.offset())))
    assert len(p) == 4 and reports == [], "reports are served by poll/flush only"
    assert p.poll(0) == 4 and len(p) == 0
    assert reports == [(None, i) for i in range(4)]
    got = cluster.records("t", 1)
    assert [(m.offset(), m.key(), m.value(), m.headers()) for m in got] == [
        (i, b"k", f"v{i}".encode(), [("n", str(i).encode())]) for i in range(4)
    ]
    assert got[0].timestamp()[0] == 1  # CreateTime


def test_keys_hash_as_kafkas_murmur2() -> None:
    """Java's Utils.murmur2 test vectors: keyed records land where a broker's producer puts
    them (partitioner murmur2_random, as the publisher sets)."""
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
             b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, b"abc": 479470107}
    for key, java in cases.items():
        assert murmur2(key) == java & 0xFFFFFFFF, key


def test_markers_take_offsets_and_only_committed_records_are_read(cluster: FakeCluster) -> None:
    p = cluster.producer({"transactional.id": "x"})
    p.init_transactions(1)
    rc = cluster.consumer({"group.id": "r"})
    ru = cluster.consumer({"group.id": "r", "isolation.level": "read_uncommitted"})
    tp = TopicPartition("t", 0)
    p.begin_transaction()
    p.produce("t", b"a", partition=0)
    assert rc.get_watermark_offsets(tp) == (0, 0), "the stable offset stops at the open one"
    assert ru.get_watermark_offsets(tp) == (0, 1)
    p.abort_transaction(1)
    p.begin_transaction()
    p.produce("t", b"c", partition=0)
    p.commit_transaction(1)
    assert cluster.watermarks("t", 0) == (0, 4), "a0, abort marker, c2, commit marker"
    rc.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
    assert [m.value() for m in rc.consume(10, 0)] == [b"c"]
    assert rc.position([tp])[0].offset == 4, "past the last marker"
    assert [m.value() for m in cluster.records("t", 0, committed=False)] == [b"a", b"c"]


def test_an_eager_rebalance_revokes_first_and_hands_over_only_after_the_revoke(
    cluster: FakeCluster,
) -> None:
    a, ea = member(cluster)
    assert a.poll(0) is None and ea.seen == [("assign", [0, 1])]
    b, eb = member(cluster)
    cluster.rebalance("g", {a: [("t", 0)], b: [("t", 1)]})
    b.poll(0)
    assert eb.seen == [], "b's assignment waits for a's revoke (nothing is owned twice)"
    a.poll(0)
    assert ea.seen[1:] == [("revoke", [0, 1]), ("assign", [0])]
    b.poll(0)
    assert eb.seen == [("assign", [1])]
    assert [p.partition for p in b.assignment()] == [1], "the binding's fallback assigned"


def test_a_cooperative_rebalance_moves_only_what_changes(cluster: FakeCluster) -> None:
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    a, ea = member(cluster, **conf)
    a.poll(0)
    b, eb = member(cluster, **conf)
    for _ in range(2):
        a.poll(0)
        b.poll(0)
    assert ea.seen == [("assign", [0, 1]), ("revoke", [1]), ("assign", []), ("assign", [])]
    assert eb.seen == [("assign", []), ("assign", [1])]
    with pytest.raises(KafkaException) as e:
        a.assign([TopicPartition("t", 0)])
    assert code(e) == KafkaError._STATE, "eager calls are refused in a cooperative group"


def test_the_consumer_protocol_reconciles_in_one_round(cluster: FakeCluster) -> None:
    conf = {"group.protocol": "consumer"}
    a, ea = member(cluster, **conf)
    a.poll(0)
    b, eb = member(cluster, **conf)
    b.poll(0)
    assert eb.seen == [], "its partitions are still a's"
    a.poll(0)
    b.poll(0)
    assert ea.seen == [("assign", [0, 1]), ("revoke", [1]), ("assign", [])]
    assert eb.seen == [("assign", [1])]
    with pytest.raises(KafkaException) as e:
        cluster.consumer({"group.id": "x", "group.protocol": "consumer",
                          "session.timeout.ms": 6000})
    assert code(e) == KafkaError._INVALID_ARG, "the broker owns the session there"


def test_a_lost_member_hears_on_lost_cannot_commit_and_rejoins(cluster: FakeCluster) -> None:
    a, ea = member(cluster)
    a.poll(0)
    b, eb = member(cluster)
    b.poll(0)
    a.poll(0)
    b.poll(0)
    cluster.lose(a)
    b.poll(0)
    assert eb.seen[-1] == ("assign", [0, 1]), "the others take its partitions"
    with pytest.raises(KafkaException) as e:
        a.commit(offsets=[TopicPartition("t", 0, 1)], asynchronous=False)
    assert code(e) == KafkaError.UNKNOWN_MEMBER_ID
    a.poll(0)
    assert ("lost", [0]) in ea.seen and a.assignment() == []
    b.poll(0)
    a.poll(0)
    # It joined again under a new member id, which the range assignor now sorts after b's.
    assert ea.seen[-1] == ("assign", [1]), "it joined again after the loss"


def test_on_revoke_stands_in_for_a_missing_on_lost(cluster: FakeCluster) -> None:
    c = cluster.consumer({"group.id": "g"})
    ev = Events()
    ev.subscribe(c, lost=False)
    c.poll(0)
    cluster.lose(c)
    c.poll(0)
    assert ev.seen[:2] == [("assign", [0, 1]), ("revoke", [0, 1])]


def test_an_exception_in_a_callback_comes_out_of_poll_after_the_fallback(
    cluster: FakeCluster,
) -> None:
    c = cluster.consumer({"group.id": "g"})

    def boom(_c: Any, _ps: Any) -> None:
        raise RuntimeError("handler failed")

    c.subscribe(["t"], on_assign=boom)
    with pytest.raises(RuntimeError, match="handler failed"):
        c.poll(0)
    assert len(c.assignment()) == 2


def test_a_second_producer_with_the_id_fences_the_first(cluster: FakeCluster) -> None:
    first = cluster.producer({"transactional.id": "x"})
    first.init_transactions(1)
    first.begin_transaction()
    first.produce("t", b"old", partition=0)
    second = cluster.producer({"transactional.id": "x"})
    second.init_transactions(1)
    with pytest.raises(KafkaException) as e:
        first.commit_transaction(1)
    assert code(e) == KafkaError._FENCED and e.value.args[0].fatal()
    with pytest.raises(KafkaException):
        first.poll(0)  # once more, from the next poll
    first.poll(0)
    with pytest.raises(KafkaException) as e:
        first.produce("t", b"more")
    assert code(e) == KafkaError._FATAL
    assert cluster.records("t", 0) == [], "its open transaction was aborted"


def test_a_transaction_open_past_its_timeout_is_aborted_and_fences(cluster: FakeCluster) -> None:
    p = cluster.producer({"transactional.id": "x"})
    p.init_transactions(1)
    p.begin_transaction()
    p.produce("t", b"late", partition=0)
    cluster.expire_transaction("x")
    with pytest.raises(KafkaException) as e:
        p.commit_transaction(1)
    assert code(e) == KafkaError._FENCED
    assert cluster.watermarks("t", 0) == (0, 2) and cluster.records("t", 0) == []


def test_a_failed_write_makes_the_transaction_abortable(cluster: FakeCluster) -> None:
    cluster.fail_next_produce("t", KafkaError.NOT_ENOUGH_REPLICAS)
    p = cluster.producer({"transactional.id": "x"})
    p.init_transactions(1)
    p.begin_transaction()
    reports: list[Any] = []
    p.produce("t", b"x", partition=0, on_delivery=lambda e, m: reports.append(e.code()))
    p.flush(1)
    assert reports == [KafkaError.NOT_ENOUGH_REPLICAS]
    with pytest.raises(KafkaException) as e:
        p.produce("t", b"y", partition=0)
    assert code(e) == KafkaError._STATE
    with pytest.raises(KafkaException) as e:
        p.commit_transaction(1)
    assert e.value.args[0].txn_requires_abort()
    p.abort_transaction(1)
    p.begin_transaction()  # usable again
    assert cluster.watermarks("t", 0) == (0, 1), "the partition was in it: an abort marker"


def test_injected_commit_and_transaction_failures(cluster: FakeCluster) -> None:
    results: list[Any] = []
    c = cluster.consumer({"group.id": "solo", "on_commit": lambda e, ps: results.append(e)})
    cluster.fail_commit("solo", KafkaError.REBALANCE_IN_PROGRESS, count=2)
    with pytest.raises(KafkaException) as e:
        c.commit(offsets=[TopicPartition("t", 0, 1)], asynchronous=False)
    assert code(e) == KafkaError.REBALANCE_IN_PROGRESS
    c.commit(offsets=[TopicPartition("t", 0, 1)])
    c.poll(0)
    assert [r.code() for r in results] == [KafkaError.REBALANCE_IN_PROGRESS]
    c.commit(offsets=[TopicPartition("t", 0, 1)], asynchronous=False)
    assert cluster.committed("solo") == {("t", 0): 1}
    p = cluster.producer({"transactional.id": "x"})
    p.init_transactions(1)
    p.begin_transaction()
    cluster.fail_transaction("commit_transaction", KafkaError._TIMED_OUT, retriable=True)
    with pytest.raises(KafkaException) as e:
        p.commit_transaction(1)
    assert e.value.args[0].retriable()
    p.commit_transaction(1)  # a retriable failure: the call can be made again


def test_offsets_of_an_open_transaction_are_not_stable(cluster: FakeCluster) -> None:
    c, _ = member(cluster)
    c.poll(0)
    p = cluster.producer({"transactional.id": "x"})
    p.init_transactions(1)
    p.begin_transaction()
    p.send_offsets_to_transaction([TopicPartition("t", 0, 5)], c.consumer_group_metadata())
    with pytest.raises(KafkaException) as e:
        c.committed([TopicPartition("t", 0)], timeout=1)
    assert code(e) == KafkaError._TIMED_OUT
    p.commit_transaction(1)
    assert c.committed([TopicPartition("t", 0)])[0].offset == 5


def test_stale_group_metadata_is_refused(cluster: FakeCluster) -> None:
    a, _ = member(cluster)
    a.poll(0)
    stale = a.consumer_group_metadata()
    b, _ = member(cluster)
    for _ in range(2):
        a.poll(0)
        b.poll(0)
    p = cluster.producer({"transactional.id": "x"})
    p.init_transactions(1)
    p.begin_transaction()
    with pytest.raises(KafkaException) as e:
        p.send_offsets_to_transaction([TopicPartition("t", 0, 1)], stale)
    assert code(e) == KafkaError.ILLEGAL_GENERATION and e.value.args[0].txn_requires_abort()


def test_an_outage_as_the_client_sees_it(cluster: FakeCluster) -> None:
    errors: list[int] = []
    c = cluster.consumer({"group.id": "r", "error_cb": lambda e: errors.append(e.code())})
    c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
    p = cluster.producer({"transactional.id": "x"})
    p.init_transactions(1)
    cluster.down = True
    assert c.poll(0) is None and c.poll(0) is None
    assert errors == [KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN], "once per outage"
    for call, expected in (
        (lambda: c.committed([TopicPartition("t", 0)], timeout=1), KafkaError._TIMED_OUT),
        (lambda: c.list_topics(timeout=1), KafkaError._TRANSPORT),
        (lambda: c.get_watermark_offsets(TopicPartition("t", 0)), KafkaError._UNKNOWN_PARTITION),
    ):
        with pytest.raises(KafkaException) as e:
            call()
        assert code(e) == expected
    p.begin_transaction()
    reports: list[Any] = []
    p.produce("t", b"waits", partition=0, on_delivery=lambda e, m: reports.append(e))
    assert p.flush(1) == 1 and reports == []
    cluster.down = False
    assert p.flush(1) == 0 and reports == [None]
    p.commit_transaction(1)
    assert [m.value() for m in c.consume(5, 0)] == [b"waits"]


def test_records_that_outlast_their_timeout_in_an_outage_fail(cluster: FakeCluster) -> None:
    p = cluster.producer({"transactional.id": "x"})
    p.init_transactions(1)
    p.begin_transaction()
    cluster.down = True
    reports: list[Any] = []
    p.produce("t", b"lost", partition=0, on_delivery=lambda e, m: reports.append(e.code()))
    cluster.time_out_pending()
    cluster.down = False
    p.poll(0)
    assert reports == [KafkaError._MSG_TIMED_OUT]
    with pytest.raises(KafkaException) as e:
        p.commit_transaction(1)
    assert code(e) == KafkaError._INCONSISTENT and e.value.args[0].txn_requires_abort()


def test_pause_resume_and_seek(cluster: FakeCluster) -> None:
    p = cluster.producer({})
    for i in range(5):
        p.produce("t", str(i), partition=0)
    c = cluster.consumer({"group.id": "r", "enable.partition.eof": True})
    tp = TopicPartition("t", 0)
    c.assign([TopicPartition("t", 0, 0)])
    assert [m.offset() for m in c.consume(2, 0)] == [0, 1]
    c.pause([tp])
    assert c.consume(5, 0) == []
    c.resume([tp])
    c.seek(TopicPartition("t", 0, 1))
    assert c.position([tp])[0].offset == -1001, "a seek forgets the position"
    got = c.consume(10, 0)
    assert [m.offset() for m in got[:-1]] == [1, 2, 3, 4]
    assert got[-1].error().code() == KafkaError._PARTITION_EOF
    with pytest.raises(KafkaException) as e:
        c.seek(TopicPartition("t", 1, 0))
    assert code(e) == KafkaError._UNKNOWN_PARTITION


def test_closed_consumers_refuse_calls_and_commit_on_close(cluster: FakeCluster) -> None:
    cluster.producer({}).produce("t", b"x", partition=0)
    c = cluster.consumer({"group.id": "g", "auto.offset.reset": "earliest"})
    c.subscribe(["t"])
    assert c.poll(0) is not None
    c.close()
    assert cluster.committed("g") == {("t", 0): 1}, "enable.auto.commit is on by default"
    with pytest.raises(RuntimeError, match="Consumer closed"):
        c.poll(0)
