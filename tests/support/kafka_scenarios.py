"""Scenarios of the fake Kafka's contract (tests/integration/test_fake_kafka_contract.py) on
records and transactions: each runs on a Backend (the real broker or the fake) and returns
what it observed, as plain data."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, TopicPartition

from tests.support.kafka_backends import (
    Backend,
    err,
    offsets,
    raised,
    read_to_end,
    settled_watermarks,
    wait_for,
)


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
