"""Batches (schemas/batch_record.py, consumers/batches/book.py, producers/batches.py, the
worker's member records) on the in-memory Kafka: derived ids, the records' codec, counting to
completion (a DLQ replay updates a closed batch without closing it again), bad input refused
before anything is sent, and the worker writing a member's final outcome in its interval."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from jobstream.config.topics import BATCHES_PARTITIONS, BATCHES_TOPIC
from jobstream.consumers.batches.book import Book
from jobstream.consumers.runtime.children import child_id
from jobstream.producers.batches import build_batch, callback_payload
from jobstream.producers.errors import InvalidJob
from jobstream.schemas import batch_record as br
from jobstream.schemas import wire
from tests.support.fake_worker import JOB_TYPE, Rig


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        r.close()


def test_ids_are_derived_and_every_key_of_a_batch_has_one_partition() -> None:
    ids = [br.member_id("b1", i) for i in range(1000)]
    assert len(set(ids)) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert ids[7] == br.member_id("b1", 7) != br.member_id("b2", 7)
    assert br.callback_id("b1") == br.callback_id("b1", "complete") != br.callback_id(
        "b1", "success")
    assert br.callback_id("b1") not in ids
    parts = {br.partition_of(f"batch-{i}", BATCHES_PARTITIONS) for i in range(200)}
    assert parts == set(range(BATCHES_PARTITIONS)), "batches spread over every partition"
    assert br.split_key(br.member_key("b1", ids[3])) == ("b1", ids[3])
    assert br.split_key(b"b1") == ("b1", None)


def test_records_round_trip_and_foreign_values_are_ignored() -> None:
    b = br.Batch("b1", JOB_TYPE, 3, (JOB_TYPE, {"seq": 1}), None, key="k", parent=("a", "m"),
                 parent_job_id="p", created_ms=5)
    assert br.decode_batch(b.encode()) == b
    closed = b.closed({"succeeded": 2, "dead_lettered": 1, "cancelled": 0}, 9)
    assert br.decode_batch(closed.encode()) == closed and closed.state == br.CLOSED
    assert br.decode_member(br.encode_member("dead_lettered", 7)) == ("dead_lettered", 7)
    for junk in (None, b"", b"{", b"[1]", b'{"o": "maybe"}'):
        assert br.decode_member(junk) is None
        assert br.decode_batch(junk) is None
    with pytest.raises(ValueError, match="outcome"):
        br.encode_member("running", 1)


def _feed(book: Book, batch: br.Batch, outcomes: dict[int, str]) -> None:
    for i, o in outcomes.items():
        book.apply(br.member_key(batch.id, br.member_id(batch.id, i)), br.encode_member(o, i))


def test_a_batch_is_ready_once_every_member_is_final_and_closes_once() -> None:
    book = Book()
    b = br.Batch("b1", JOB_TYPE, 4, (JOB_TYPE, {}))
    _feed(book, b, {0: "succeeded"})  # an outcome before its batch record (at least once)
    book.apply(b.id.encode(), b.encode())
    _feed(book, b, {1: "succeeded", 2: "dead_lettered"})
    assert book.ready() == [] and book.open_count() == 1
    _feed(book, b, {2: "dead_lettered"})  # a repeat (a redo) changes nothing
    assert book.ready() == []
    _feed(book, b, {3: "succeeded"})
    assert book.ready() == ["b1"]
    e = book.entries["b1"]
    assert e.counts() == {"succeeded": 3, "dead_lettered": 1, "cancelled": 0}
    assert e.last_at == 3
    book.apply(b.id.encode(), b.closed(e.counts(), 10).encode())
    assert book.open_count() == 0
    _feed(book, b, {2: "succeeded"})  # replayed from the DLQ, then succeeded
    assert book.ready() == [], "a closed batch is not closed again"
    assert e.counts() == {"succeeded": 4, "dead_lettered": 0, "cancelled": 0}
    book.apply(b.id.encode(), b.encode())  # an old open record read again stays closed
    assert book.entries["b1"].batch is not None and book.entries["b1"].batch.state == "closed"


def test_the_owners_pruned_book_keeps_a_closed_batchs_counts_without_its_successes() -> None:
    """A closed batch in the owner's book counts its succeeded members instead of keeping an
    entry for each (10,000 entries per batch until retirement otherwise); a dead letter stays
    so its replay still updates the counts, and a repeated success is not counted twice."""
    book = Book(prune=True)
    b = br.Batch("b1", JOB_TYPE, 4, (JOB_TYPE, {}))
    book.apply(b.id.encode(), b.encode())
    _feed(book, b, {0: "succeeded", 1: "succeeded", 2: "dead_lettered", 3: "cancelled"})
    e = book.entries["b1"]
    book.apply(b.id.encode(), b.closed(e.counts(), 10).encode())
    assert set(e.outcomes) == {br.member_id("b1", 2), br.member_id("b1", 3)}
    assert e.pruned == 2 and e.last_at == 3 and e.complete
    assert e.counts() == {"succeeded": 2, "dead_lettered": 1, "cancelled": 1}
    _feed(book, b, {0: "succeeded"})  # a success's record read again (at least once)
    assert e.counts() == {"succeeded": 2, "dead_lettered": 1, "cancelled": 1}
    _feed(book, b, {2: "succeeded"})  # the dead letter replayed and succeeded
    assert e.counts() == {"succeeded": 3, "dead_lettered": 0, "cancelled": 1}
    _feed(book, b, {2: "succeeded"})
    assert e.counts()["succeeded"] == 3 and book.ready() == []


def test_retirable_batches_are_the_long_closed_ones_and_orphan_members() -> None:
    book = Book(prune=True)
    old, new, still = (br.Batch(n, JOB_TYPE, 1, None) for n in ("old", "new", "open"))
    for b, closed in ((old, 100), (new, 5_000), (still, None)):
        book.apply(b.id.encode(), (b.closed({}, closed) if closed else b).encode())
    _feed(book, br.Batch("gone", JOB_TYPE, 1, None), {0: "succeeded"})  # at=0, no record
    assert book.retirable(1_000) == ["gone", "old"]
    book.apply(br.member_key("x", "m"), None)  # a tombstone of an unknown batch's member
    book.apply(b"y", None)
    assert "x" not in book.entries and "y" not in book.entries


def test_the_callback_payload_gets_the_counts_its_schema_has() -> None:
    p = callback_payload({"seq": 1, "batch_id": "x"}, "b1", {"succeeded": 2}, 3,
                         {"seq", "batch_id", "succeeded", "dead_lettered"})
    assert p == {"seq": 1, "batch_id": "b1", "succeeded": 2, "dead_lettered": 0}


def test_bad_input_is_refused_before_anything_is_sent(monkeypatch: pytest.MonkeyPatch,
                                                      rigs: list[Rig]) -> None:
    rig = Rig(monkeypatch)
    rigs.append(rig)
    pub = rig.publisher
    ok = (JOB_TYPE, {"seq": 0})
    cases: list[tuple[Any, str]] = [
        (lambda: build_batch(pub, JOB_TYPE, [], batch_id="b", on_complete=ok), "no payloads"),
        (lambda: build_batch(pub, "no.such", [{"seq": 1}], batch_id="b", on_complete=ok),
         "no.such"),
        (lambda: build_batch(pub, JOB_TYPE, [{"seq": 1}, {"seq": "x"}], batch_id="b",
                             on_complete=ok), "member 1"),
        (lambda: build_batch(pub, JOB_TYPE, [{"seq": 1}], batch_id="b",
                             on_complete=("nope.type", {})), "on_complete"),
        (lambda: build_batch(pub, JOB_TYPE, [{"seq": 1}], batch_id="b",
                             on_complete=(JOB_TYPE, {"seq": "x"})), "on_complete"),
        (lambda: build_batch(pub, JOB_TYPE, [{"seq": 1}], batch_id="b", on_complete=None),
         "required"),
        (lambda: build_batch(pub, JOB_TYPE, {"seq": 1}, batch_id="b", on_complete=ok),
         "list of payloads"),
    ]
    for call, words in cases:
        with pytest.raises((InvalidJob, KeyError)) as ei:
            call()
        assert words in str(ei.value), (words, ei.value)
    with pytest.raises(InvalidJob, match="no payloads"):
        pub.batch(JOB_TYPE, [], on_complete=ok)
    assert rig.values(BATCHES_TOPIC) == [] and rig.values(rig.topics.main) == []


def _send(rig: Rig, recs: list[Any]) -> None:
    for r in recs:
        rig.publisher.send(r.topic, r.key, r.value, r.headers, partition=r.partition)
    rig.publisher.flush(5)


@pytest.mark.parametrize("mode", ["transactional", "at_least_once"])
def test_the_worker_writes_each_members_final_outcome(monkeypatch: pytest.MonkeyPatch,
                                                      rigs: list[Rig], mode: str) -> None:
    rig = Rig(monkeypatch, job={"retry_tiers": ["20ms"], "max_attempts": 2},
              worker={"mode": mode})
    rigs.append(rig)
    behaviours = ["ok", "permanent", "fail_until:2", "fail_until:9", "ok"]
    batch, recs = build_batch(rig.publisher, JOB_TYPE,
                              [{"seq": i, "behaviour": b} for i, b in enumerate(behaviours)],
                              batch_id="b-1", on_complete=(JOB_TYPE, {"seq": 99}))
    assert [wire.decode_headers(r.headers).get(wire.BATCH) for r in recs[1:]] == ["b-1"] * 5
    assert [r.job_id for r in recs[1:]] == [br.member_id("b-1", i) for i in range(5)]
    _send(rig, recs)
    rig.start()
    book = Book()

    def counted() -> bool:
        book.entries.clear()
        for m in rig.values(BATCHES_TOPIC):
            book.apply(m.key(), m.value())
        e = book.entries.get("b-1")
        return e is not None and len(e.outcomes) == 5

    rig.wait(counted, "every member's outcome", timeout=10)
    assert book.entries["b-1"].counts() == {"succeeded": 3, "dead_lettered": 2, "cancelled": 0}
    parts = {m.partition() for m in rig.values(BATCHES_TOPIC)}
    assert parts == {br.partition_of("b-1", BATCHES_PARTITIONS)}
    assert book.ready() == ["b-1"]
    assert batch.total == 5


def test_ctx_batch_writes_its_records_with_the_parents_success(
        monkeypatch: pytest.MonkeyPatch, rigs: list[Rig]) -> None:
    seen: list[str] = []

    def handler(payload: dict[str, Any], ctx: Any) -> None:
        if payload["seq"] == 0:
            seen.append(ctx.batch(JOB_TYPE, [{"seq": 10}, {"seq": 11}],
                                  on_complete=(JOB_TYPE, {"seq": 99})))
            if ctx.attempt < 2:
                raise ConnectionError("the batch goes with this attempt")

    rig = Rig(monkeypatch, handler=handler, job={"retry_tiers": ["20ms"]})
    rigs.append(rig)
    pid = rig.publish(0)
    rig.start()
    bid = child_id(pid, None, 0)
    members = {br.member_id(bid, 0), br.member_id(bid, 1)}
    rig.wait(lambda: len([m for m in rig.values(BATCHES_TOPIC) if b"/" in m.key()]) == 2,
             "both members' outcomes", timeout=10)
    assert seen == [bid, bid], "each attempt opens the same batch"
    heads = [m for m in rig.values(BATCHES_TOPIC) if m.key() == bid.encode()]
    assert len(heads) == 1, "the failed attempt's batch record was dropped"
    got = br.decode_batch(heads[0].value())
    assert got is not None and got.total == 2 and got.parent_job_id == pid
    runs = [m for m in rig.values(rig.topics.main)
            if wire.decode_headers(m.headers()).get(wire.BATCH) == bid]
    assert {wire.decode_headers(m.headers())[wire.JOB_ID] for m in runs} == members
    from jobstream.schemas import history

    told = [r for m in rig.values(rig.topics.history)
            for r in history.events(history.decode(m.value()))]
    named = [(r["child_job_id"], r["child_job_type"]) for r in told
             if r.get("event") == "enqueued" and r.get("job_id") == pid]
    assert named == [(bid, "batch")], "the parent's history names its batch, once"


def _owner(monkeypatch: pytest.MonkeyPatch, rig: Rig, name: str = "w1") -> Any:
    from tests.support.fake_kafka import patch_clients

    patch_clients(monkeypatch, rig.cluster, ("jobstream.consumers.batches.owner",
                                             "jobstream.producers.batches"))
    from jobstream.consumers.batches.owner import BatchOwner

    o = BatchOwner(rig.settings, "g", name)
    o.start()
    return o


def test_the_owner_runs_each_callback_once_and_a_new_owner_does_not_again(
        monkeypatch: pytest.MonkeyPatch, rigs: list[Rig]) -> None:
    rig = Rig(monkeypatch, job={"retry_tiers": ["20ms"], "max_attempts": 1})
    rigs.append(rig)
    owner = _owner(monkeypatch, rig)
    try:
        bid = rig.publisher.batch(JOB_TYPE, [{"seq": i, "behaviour": "permanent" if i == 2
                                              else "ok"} for i in range(5)],
                                  on_complete=(JOB_TYPE, {"seq": 99}),
                                  on_success=(JOB_TYPE, {"seq": 98}))
        rig.start()
        cb = br.callback_id(bid)
        rig.wait(lambda: cb in rig.ids(rig.topics.main), "the callback", timeout=10)
        rig.wait(lambda: owner.closed == 1, "closed")
        assert br.callback_id(bid, "success") not in rig.ids(rig.topics.main), "a dead letter"
        e = owner.books[br.partition_of(bid, BATCHES_PARTITIONS)].entries[bid]
        assert e.batch is not None and e.batch.state == "closed"
        assert e.batch.counts == {"succeeded": 4, "dead_lettered": 1, "cancelled": 0}
    finally:
        owner.stop()
    again = _owner(monkeypatch, rig, "w2")  # restores the partition: the batch is closed
    try:
        rig.wait(lambda: len(again.restored) == BATCHES_PARTITIONS, "restored", timeout=10)
        import time

        time.sleep(0.3)
        assert again.closed == 0
        assert rig.ids(rig.topics.main).count(br.callback_id(bid)) == 1
    finally:
        again.stop()


@pytest.mark.parametrize(("args", "words"), [
    ((), "give a job type and job ids, or --batch"),
    (("test.echo",), "give a job type and job ids, or --batch"),
    (("--batch", "b1", "test.echo", "j1"), "--batch: give no job ids"),
    (("--batch", "b1", "--key", "k"), "--batch: give no job ids"),
])
def test_jobs_cancel_batch_mistakes_are_one_line(args: tuple[str, ...], words: str) -> None:
    from tests.support.harness import free_port, run_cli

    env = {"JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    proc = run_cli("jobs", "cancel", *args, env=env)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and words in lines[0], proc.stderr


def test_a_callback_without_a_topic_does_not_hold_up_other_batches(
        monkeypatch: pytest.MonkeyPatch, rigs: list[Rig]) -> None:
    rig = Rig(monkeypatch)
    rigs.append(rig)
    owner = _owner(monkeypatch, rig)
    try:
        stuck = rig.publisher.batch(JOB_TYPE, [{"seq": 1}],
                                    on_complete=("test.aecho", {"seq": 9}))  # no topic
        rig.start()
        rig.wait(lambda: any(bid == stuck for _, bid in owner.later), "put aside", timeout=10)
        fine = rig.publisher.batch(JOB_TYPE, [{"seq": 2}], on_complete=(JOB_TYPE, {"seq": 9}))
        rig.wait(lambda: br.callback_id(fine) in rig.ids(rig.topics.main), "the other callback",
                 timeout=10)
        e = owner.books[br.partition_of(stuck, BATCHES_PARTITIONS)].entries[stuck]
        assert e.is_open and e.complete, "closed once the topic exists (retried)"
    finally:
        owner.stop()


def test_the_owner_retires_a_batch_closed_longer_than_the_retention(
        monkeypatch: pytest.MonkeyPatch, rigs: list[Rig]) -> None:
    """Closed batches were kept for ever: jobstream.batches and every owner's restore grew
    without end. After worker.batch_retention_s the owner writes tombstones for the batch
    record and every member's record, and forgets the batch."""
    import jobstream.consumers.batches.owner as owner_mod

    monkeypatch.setattr(owner_mod, "RETIRE_EVERY_S", 0.1)
    rig = Rig(monkeypatch, job={"retry_tiers": ["20ms"], "max_attempts": 1},
              worker={"batch_retention_s": 0.5})
    rigs.append(rig)
    owner = _owner(monkeypatch, rig)
    try:
        bid = rig.publisher.batch(JOB_TYPE, [{"seq": i} for i in range(3)],
                                  on_complete=(JOB_TYPE, {"seq": 99}))
        rig.start()
        rig.wait(lambda: owner.closed == 1, "closed", timeout=10)
        p = br.partition_of(bid, BATCHES_PARTITIONS)
        rig.wait(lambda: owner.retired == 1, "retired", timeout=10)
        assert bid not in owner.books[p].entries
        latest: dict[bytes, Any] = {}
        for m in rig.values(BATCHES_TOPIC):
            latest[m.key()] = m.value()
        mine = {k: v for k, v in latest.items() if k.startswith(bid.encode())}
        assert len(mine) == 4 and all(v is None for v in mine.values()), mine
    finally:
        owner.stop()


def test_the_callback_goes_to_the_topic_its_publisher_resolved(
        monkeypatch: pytest.MonkeyPatch, rigs: list[Rig]) -> None:
    """Every worker group runs a batch owner over all of jobstream.batches. An owner whose
    settings map the callback's job type to another topic (another group's, other prefixes)
    sent the callback there and closed the batch, so the batch's own workers never ran it. The
    batch record now carries the callback topics its publisher resolved."""
    rig = Rig(monkeypatch)
    rigs.append(rig)
    batch, _ = build_batch(rig.publisher, JOB_TYPE, [{"seq": 1}], batch_id="b1",
                           on_complete=(JOB_TYPE, {"seq": 99}),
                           on_success=(JOB_TYPE, {"seq": 98}))
    assert batch.topics == {"complete": rig.topics.main, "success": rig.topics.main}
    assert br.decode_batch(batch.encode()) == batch
    elsewhere = replace(batch, topics={"complete": "other.group.topic"})
    owner = _owner(monkeypatch, rig)
    try:
        monkeypatch.setattr(owner, "_topic_exists", lambda _t: True)
        out = owner._callbacks(elsewhere, {"succeeded": 1, "dead_lettered": 0, "cancelled": 0})
        assert [o[0] for o in out] == ["other.group.topic", rig.topics.main]
    finally:
        owner.stop()
