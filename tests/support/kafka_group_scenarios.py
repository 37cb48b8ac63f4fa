"""Scenarios of the fake Kafka's contract (tests/integration/test_fake_kafka_contract.py) on
consumers and groups: positions, pause and seek, handovers, incremental rebalances. Each runs
on a Backend (the real broker or the fake) and returns what it observed, as plain data."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from tests.support.kafka_backends import (
    Backend,
    err,
    offsets,
    raised,
    read_to_end,
    wait_for,
)


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
    out["paused"] = take(1, within=1.5 * b.pace)
    for i in range(6, 8):
        p.produce(t, f"v{i}".encode())
    p.flush(30)
    out["paused, more produced"] = take(1, within=1.0 * b.pace)
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


def incremental_join(b: Backend, **protocol: Any) -> dict[str, Any]:
    """A second member joins a group whose member owns everything: only what moves is revoked
    and handed over, each member hearing its callbacks in the protocol's order (how many
    partitions each names: which ones depends on member ids; the order across members is
    timing), and every partition ends with exactly one owner."""
    t = b.create("incremental", 4)
    events: dict[str, list[Any]] = {"A": [], "B": []}

    def member(name: str) -> Any:
        c = b.consumer(**{"group.id": b.real_name("group"), **protocol})

        def note(kind: str) -> Callable[[Any, list[TopicPartition]], None]:
            return lambda _c, ps: events[name].append((kind, len(ps)))

        c.subscribe([t], on_assign=note("assign"), on_revoke=note("revoke"),
                    on_lost=note("lost"))
        return c

    a = member("A")
    wait_for(lambda: bool(a.poll(0.1) or a.assignment()), "the first assignment")
    second = member("B")
    quiet_since, seen = time.monotonic(), 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        a.poll(0.05)
        second.poll(0.05)
        if sum(map(len, events.values())) != seen:
            quiet_since, seen = time.monotonic(), sum(map(len, events.values()))
        if len(a.assignment()) == 2 == len(second.assignment()) and (
            time.monotonic() - quiet_since > 1.5 * b.pace
        ):
            break
    owners = sorted(p.partition for c in (a, second) for p in c.assignment())
    a.close()
    second.close()
    return {"events": events, "owners": owners}


def cooperative_join(b: Backend) -> dict[str, Any]:
    return incremental_join(b, **{"partition.assignment.strategy": "cooperative-sticky"})


def consumer_protocol_join(b: Backend) -> dict[str, Any]:
    return incremental_join(b, **{"group.protocol": "consumer"})
