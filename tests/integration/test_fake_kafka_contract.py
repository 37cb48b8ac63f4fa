"""Contract of the in-memory Kafka (tests/support/fake_kafka.py), issue 28: each scenario
below runs twice, on the real broker and on the fake, and returns a plain dict of what it
observed (topic and transactional ids by logical name, errors by code and flags, timestamps
by type). The fake must observe exactly what Kafka does, so unit tests that drive the runtime
against it cannot drift from the broker they stand in for."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, TopicPartition

from tests.support.kafka_backends import (
    Backend,
    FakeBackend,
    RealBackend,
    err,
    offsets,
    raised,
    read_to_end,
    settled_watermarks,
    wait_for,
)

Scenario = Callable[[Backend], dict[str, Any]]


def produce_and_consume(b: Backend) -> dict[str, Any]:
    """Keys land on the partitions murmur2 picks, in order per partition, with their headers,
    null keys and values kept; delivery reports carry the offsets the reader sees."""
    t = b.create("orders", 3)
    p = b.producer(**{"partitioner": "murmur2_random", "linger.ms": 5})
    reports: list[Any] = []

    def report(i: int) -> Callable[[Any, Any], None]:
        return lambda e, m: reports.append((i, err(e), m.partition(), m.offset()))

    for i in range(12):
        headers = [("n", str(i).encode()), ("dup", b"a"), ("dup", b"b"), ("none", None)]
        p.produce(t, f"v{i}".encode(), f"key-{i % 5}".encode(), headers=headers,
                  on_delivery=report(i))
    for i in range(3):
        p.produce(t, f"p{i}".encode(), partition=2, on_delivery=report(100 + i))
    p.produce(t, None, b"tombstone", partition=0, on_delivery=report(200))
    queued = len(p)
    remaining = p.flush(30)
    c = b.consumer(**{"group.id": b.real_name("reader"), "isolation.level": "read_uncommitted"})
    ends = {q: c.get_watermark_offsets(TopicPartition(t, q), timeout=10)[1] for q in range(3)}
    c.assign([TopicPartition(t, q, OFFSET_BEGINNING) for q in range(3)])
    seen: list[Any] = []
    deadline = time.monotonic() + 30
    while len(seen) < sum(ends.values()) and time.monotonic() < deadline:
        for m in c.consume(100, timeout=0.2):
            if m.error() is None:
                ts_type, ts = m.timestamp()
                seen.append((m.partition(), m.offset(), m.key(), m.value(), m.headers(),
                             ts_type, abs(ts / 1000 - time.time()) < 120))
    c.close()
    return {"queued": queued, "remaining": remaining, "reports": sorted(reports),
            "ends": ends, "seen": sorted(seen)}


def transactions_and_watermarks(b: Backend) -> dict[str, Any]:
    """A commit or abort marker takes an offset; the high watermark counts it, the last stable
    offset stops at an open transaction; read_committed skips aborted records and markers and
    ends past the last marker, read_uncommitted sees aborted records too."""
    t = b.create("ledger", 1)
    tp = TopicPartition(t, 0)
    rc = b.consumer(**{"group.id": b.real_name("rc"), "isolation.level": "read_committed"})
    ru = b.consumer(**{"group.id": b.real_name("ru"), "isolation.level": "read_uncommitted"})
    p = b.producer(**{"transactional.id": b.real_name("tx")})
    p.init_transactions(30)
    reports: list[Any] = []

    def send(producer: Any, value: bytes) -> None:
        producer.produce(t, value, on_delivery=lambda e, m: reports.append(
            (value, err(e), m.offset())))

    out: dict[str, Any] = {}
    p.begin_transaction()
    for v in (b"c0", b"c1", b"c2"):
        send(p, v)
    p.flush(30)
    out["open"] = {"read_committed": rc.get_watermark_offsets(tp, timeout=10),
                   "read_uncommitted": ru.get_watermark_offsets(tp, timeout=10)}
    p.commit_transaction(30)
    out["committed"] = settled_watermarks(rc, ru, t, 0)
    p.begin_transaction()
    send(p, b"a0")
    send(p, b"a1")
    p.flush(30)
    p.abort_transaction(30)
    out["aborted"] = settled_watermarks(rc, ru, t, 0)
    plain = b.producer()
    send(plain, b"plain")
    plain.flush(30)
    p.begin_transaction()
    send(p, b"c3")
    p.commit_transaction(30)
    p.poll(0)
    out["end"] = settled_watermarks(rc, ru, t, 0)
    high = out["end"]["read_uncommitted"][1]
    for name, c in (("read_committed", rc), ("read_uncommitted", ru)):
        c.assign([TopicPartition(t, 0, OFFSET_BEGINNING)])
        out[f"{name} reads"] = read_to_end(c, t, {0: high})
        out[f"{name} position"] = offsets(c.position([tp]))
        c.close()
    out["reports"] = sorted(reports)
    return out


def offsets_in_transaction(b: Backend) -> dict[str, Any]:
    """Offsets sent in a transaction count once it commits, never when it aborts; while it is
    open a read_committed consumer cannot read them (committed() times out); a consumer's
    group metadata from outside the group is accepted; calls outside a transaction fail."""
    t = b.create("jobs", 2)
    group = b.real_name("workers")
    tps = [TopicPartition(t, 0), TopicPartition(t, 1)]
    member = b.consumer(**{"group.id": group, "isolation.level": "read_committed"})
    member.subscribe([t])
    wait_for(lambda: bool(member.poll(0.1) or member.assignment()), "an assignment")
    meta = member.consumer_group_metadata()
    ru = b.consumer(**{"group.id": group, "isolation.level": "read_uncommitted"})
    p = b.producer(**{"transactional.id": b.real_name("tx")})
    p.init_transactions(30)
    out: dict[str, Any] = {}
    p.begin_transaction()
    p.produce(t, b"x", partition=0)
    p.send_offsets_to_transaction(
        [TopicPartition(t, 0, 3), TopicPartition(t, 1, OFFSET_INVALID)], meta, 30
    )
    out["open, read_uncommitted"] = offsets(ru.committed(tps, timeout=10))
    out["open, read_committed"] = raised(lambda: member.committed(tps, timeout=1))
    p.commit_transaction(30)
    out["committed"] = offsets(member.committed(tps, timeout=10))
    p.begin_transaction()
    p.send_offsets_to_transaction([TopicPartition(t, 0, 9)], meta, 30)
    p.abort_transaction(30)
    out["aborted"] = offsets(member.committed(tps, timeout=10))
    outsider = b.consumer(**{"group.id": group})
    p.begin_transaction()
    p.send_offsets_to_transaction([TopicPartition(t, 1, 4)], outsider.consumer_group_metadata(), 30)
    p.commit_transaction(30)
    out["outsider"] = offsets(member.committed(tps, timeout=10))
    p.begin_transaction()
    out["empty"] = raised(lambda: p.send_offsets_to_transaction([], meta, 30))
    p.commit_transaction(30)
    out["commit, none open"] = raised(lambda: p.commit_transaction(5))
    out["abort, none open"] = raised(lambda: p.abort_transaction(5))
    out["send, none open"] = raised(
        lambda: p.send_offsets_to_transaction([TopicPartition(t, 0, 1)], meta, 5))
    out["begin twice"] = [raised(p.begin_transaction), raised(p.begin_transaction)]
    p.abort_transaction(30)
    for c in (member, ru, outsider):
        c.close()
    return out


def seek_and_pause(b: Backend) -> dict[str, Any]:
    """Positions after consuming and after a seek; a paused partition delivers nothing (also
    what arrives meanwhile) and resumes where it stood; seeking an unassigned partition fails,
    pausing one does not; a seek past the end is out of range: auto.offset.reset applies."""
    t = b.create("seek", 1)
    other = b.create("other", 1)
    tp = TopicPartition(t, 0)
    p = b.producer()
    for i in range(6):
        p.produce(t, f"v{i}".encode())
    p.flush(30)
    c = b.consumer(**{"group.id": b.real_name("seeker"), "auto.offset.reset": "earliest"})
    out: dict[str, Any] = {}

    def take(n: int, within: float = 30.0) -> list[int]:
        got: list[int] = []
        deadline = time.monotonic() + within
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                got.append(m.offset())
        return got

    c.assign([TopicPartition(t, 0, 0)])
    out["assigned position"] = offsets(c.position([tp]))
    out["first three"] = take(3)
    out["position"] = offsets(c.position([tp]))
    c.seek(TopicPartition(t, 0, 1))
    out["position after seek"] = offsets(c.position([tp]))
    out["after seek"] = take(2)
    c.pause([tp])
    out["paused"] = take(1, within=1.5)
    for i in range(6, 8):
        p.produce(t, f"v{i}".encode())
    p.flush(30)
    out["paused, more produced"] = take(1, within=1.0)
    c.resume([tp])
    out["resumed"] = take(5)
    out["seek unassigned"] = raised(lambda: c.seek(TopicPartition(other, 0, 0)))
    out["pause unassigned"] = raised(lambda: c.pause([TopicPartition(other, 0)]))
    c.seek(TopicPartition(t, 0, OFFSET_BEGINNING))
    out["from the beginning"] = take(1)
    c.seek(TopicPartition(t, 0, 100))
    out["past the end, reset to earliest"] = take(1)
    c.close()
    return out


def handover(b: Backend) -> dict[str, Any]:
    """The group hands a closed consumer's partitions to the next one (on_revoke at close,
    on_assign to the newcomer), who starts at the committed offsets; an asynchronous commit
    reports to on_commit, and so does the automatic commit at close (librdkafka's default),
    of what moved only; a transaction carrying the first member's metadata is refused."""
    t = b.create("handover", 2)
    group = b.real_name("group")
    p = b.producer()

    def produce(n: int) -> None:
        for q in range(2):
            for _ in range(n):
                p.produce(t, f"p{q}".encode(), partition=q)
        p.flush(30)

    produce(3)
    events: list[Any] = []
    commits: list[Any] = []

    def member(name: str, **conf: Any) -> Any:
        c = b.consumer(**{"group.id": group, "auto.offset.reset": "earliest",
                          "partition.assignment.strategy": "range",
                          "on_commit": lambda e, ps: commits.append((name, err(e), offsets(ps))),
                          **conf})

        def note(kind: str) -> Callable[[Any, list[TopicPartition]], None]:
            return lambda _c, ps: events.append((name, kind, sorted(x.partition for x in ps)))

        c.subscribe([t], on_assign=note("assign"), on_revoke=note("revoke"),
                    on_lost=note("lost"))
        return c

    a = member("A", **{"enable.auto.commit": False})
    out: dict[str, Any] = {"A reads": read_to_end(a, t, {0: 3, 1: 3})}
    meta = a.consumer_group_metadata()
    out["A commit"] = offsets(
        a.commit(offsets=[TopicPartition(t, 0, 2), TopicPartition(t, 1, 1)], asynchronous=False)
    )
    a.close()
    second = member("B", **{"enable.auto.commit": False})
    out["B reads"] = read_to_end(second, t, {0: 3, 1: 3})
    second.commit(asynchronous=True)
    wait_for(lambda: bool(second.poll(0.1) or commits), "the commit's report")
    zombie = b.producer(**{"transactional.id": b.real_name("zombie")})
    zombie.init_transactions(30)
    zombie.begin_transaction()
    out["zombie send"] = raised(
        lambda: zombie.send_offsets_to_transaction([TopicPartition(t, 0, 3)], meta, 30))
    out["zombie commit"] = raised(lambda: zombie.commit_transaction(30))
    zombie.abort_transaction(30)
    second.close()
    produce(1)
    third = member("C")  # commits automatically
    out["C reads"] = read_to_end(third, t, {0: 4, 1: 4})
    third.close()
    reader = b.consumer(**{"group.id": group})
    out["committed"] = offsets(reader.committed([TopicPartition(t, 0), TopicPartition(t, 1)],
                                                timeout=10))
    reader.close()
    out["events"], out["commits"] = events, commits
    return out


def fencing(b: Backend) -> dict[str, Any]:
    """A second producer with the same transactional.id aborts the first one's transaction
    and fences it: its next transactional call raises a fatal _FENCED, once more from its
    next poll, and it produces no more; the newcomer's transaction commits."""
    t = b.create("fenced", 1)
    tid = b.real_name("tx")
    errors: list[str] = []
    first = b.producer(**{"transactional.id": tid, "error_cb": lambda e: errors.append(e.name())})
    first.init_transactions(30)
    first.begin_transaction()
    first.produce(t, b"from the first")
    first.flush(30)
    second = b.producer(**{"transactional.id": tid})
    second.init_transactions(30)
    out: dict[str, Any] = {
        "commit": raised(lambda: first.commit_transaction(10)),
        "poll": raised(lambda: first.poll(0.5)),
        "poll again": raised(lambda: first.poll(0.1)),
        "begin": raised(first.begin_transaction),
        "produce": raised(lambda: first.produce(t, b"more")),
        "abort": raised(lambda: first.abort_transaction(10)),
    }
    second.begin_transaction()
    second.produce(t, b"from the second")
    second.commit_transaction(30)
    rc = b.consumer(**{"group.id": b.real_name("rc"), "isolation.level": "read_committed"})
    ru = b.consumer(**{"group.id": b.real_name("ru"), "isolation.level": "read_uncommitted"})
    out["watermarks"] = settled_watermarks(rc, ru, t, 0)
    rc.assign([TopicPartition(t, 0, OFFSET_BEGINNING)])
    out["reads"] = read_to_end(rc, t, {0: out["watermarks"]["read_uncommitted"][1]})
    rc.close()
    ru.close()
    out["error_cb"] = errors
    # Fenced while producing: the record's own request meets the new epoch.
    third = b.producer(**{"transactional.id": tid})
    third.init_transactions(30)
    third.begin_transaction()
    fourth = b.producer(**{"transactional.id": tid})
    fourth.init_transactions(30)
    third.produce(t, b"fenced on the way")
    out["flush, fenced"] = raised(lambda: third.flush(10))
    out["produce, fenced"] = raised(lambda: third.produce(t, b"after"))
    return out


def oversized(b: Backend) -> dict[str, Any]:
    """A record over the topic's max.message.bytes fails in its delivery report; one over the
    producer's message.max.bytes is refused at produce(); in a transaction the failure makes
    it abortable: no more produce, send_offsets and commit raise it, abort clears it."""
    small = b.create("small", 1, {"max.message.bytes": "1000"})
    big = b.create("big", 1)
    p = b.producer()
    reports: list[Any] = []

    def report(what: str) -> Callable[[Any, Any], None]:
        return lambda e, m: reports.append((what, err(e), m.partition(), m.offset()))

    # Flushed one by one: a broker holds a whole batch against the limit, and two records
    # produced together would fail together (the fake checks each record alone).
    p.produce(small, b"x" * 2000, on_delivery=report("too large"))
    p.flush(30)
    p.produce(small, b"y" * 100, on_delivery=report("fits"))
    p.flush(30)
    out: dict[str, Any] = {
        "producer limit": raised(lambda: p.produce(big, b"z" * 1_100_000)),
    }
    group = b.real_name("g")
    c = b.consumer(**{"group.id": group})
    tx = b.producer(**{"transactional.id": b.real_name("tx")})
    tx.init_transactions(30)
    tx.begin_transaction()
    tx.produce(big, b"fine", on_delivery=report("fine, in txn"))
    tx.produce(small, b"x" * 2000, on_delivery=report("too large, in txn"))
    tx.flush(30)
    out["produce after"] = raised(lambda: tx.produce(big, b"more"))
    out["send offsets"] = raised(lambda: tx.send_offsets_to_transaction(
        [TopicPartition(big, 0, 1)], c.consumer_group_metadata(), 30))
    out["commit"] = raised(lambda: tx.commit_transaction(30))
    out["abort"] = raised(lambda: tx.abort_transaction(30))
    rc = b.consumer(**{"group.id": group, "isolation.level": "read_committed"})
    ru = b.consumer(**{"group.id": group, "isolation.level": "read_uncommitted"})
    out["small"] = settled_watermarks(rc, ru, small, 0)
    out["big"] = settled_watermarks(rc, ru, big, 0)
    for x in (c, rc, ru):
        x.close()
    out["reports"] = sorted(reports)
    return out


SCENARIOS: list[Scenario] = [
    produce_and_consume,
    transactions_and_watermarks,
    offsets_in_transaction,
    seek_and_pause,
    handover,
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
