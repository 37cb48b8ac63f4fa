"""Consumer groups of the in-memory Kafka: members, generations, committed offsets, and
rebalances delivered the way librdkafka delivers them.

A rebalance decides the new assignment at once and queues events per member; each member
sees them from its own poll()/consume(). As on a broker, nothing is owned twice: an
assignment waits until the members giving up its partitions have had their revoke. The
callbacks' shapes, as observed: eager (range): every member revokes everything, then all
get their new assignment; cooperative: only what moves is revoked, and a second round hands
it over, every member hearing an on_assign in each round (empty ones too); the consumer
protocol (KIP-848): one round, a member that changes hears its revoke and then an assign of
what it gains (possibly empty), the others nothing."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from confluent_kafka import KafkaError

if TYPE_CHECKING:
    from tests.support.fake_consumer import FakeConsumer
    from tests.support.fake_log import TP, Txn

_ids = itertools.count(1)


@dataclass(frozen=True)
class GroupMetadata:
    """What consumer_group_metadata() returns (a snapshot; opaque to the code under test)."""

    group_id: str
    generation_id: int
    member_id: str


@dataclass(eq=False)
class Barrier:
    """Members that must deliver a revoke before the assignments waiting on it are due."""

    pending: set[str] = field(default_factory=set)


@dataclass(eq=False)
class Event:
    kind: str  # "assign" | "revoke"
    tps: list[TP]
    barrier: Barrier | None = None  # an assign waits until its barrier is clear
    held: Callable[[], bool] | None = None  # ... or until no other member holds its partitions

    def due(self) -> bool:
        if self.kind != "assign":
            return True
        if self.held is not None:
            return not self.held()
        return self.barrier is None or not self.barrier.pending


@dataclass(eq=False)
class Member:
    id: str
    consumer: FakeConsumer
    topics: list[str]
    owned: set[TP] = field(default_factory=set)  # as delivered to the member
    generation: int = -1
    events: list[Event] = field(default_factory=list)

    def subscribed(self, topic: str) -> bool:
        return any(
            re.fullmatch(t[1:], topic) if t.startswith("^") else t == topic for t in self.topics
        )


def new_member_id(client_id: str) -> str:
    return f"{client_id}-{next(_ids):06d}"  # sorted by join order, as the assignors read them


class Group:
    def __init__(self, group_id: str, protocol: str, auto: bool) -> None:
        self.id = group_id
        self.protocol = protocol  # "eager", "cooperative" or "consumer" (KIP-848)
        self.cooperative = protocol != "eager"
        self.auto = auto  # assign on every membership change, as a broker does
        self.members: dict[str, Member] = {}
        self.generation = 0
        self.committed: dict[TP, int] = {}
        self.pending: dict[TP, Txn] = {}  # offsets sent in a transaction still open
        self._barrier: Barrier | None = None

    # -- offset commits (the broker's checks, in its order) -----------------------------------

    def check_commit(self, member_id: str, generation: int, transactional: bool) -> int | None:
        """The error code a commit with this member id and generation gets, or None."""
        if generation < 0 and not member_id:
            # A consumer outside the group (assign() only) or a transaction without group
            # metadata: accepted, unless a plain commit meets a group with live members.
            return None if transactional or not self.members else KafkaError.UNKNOWN_MEMBER_ID
        member = self.members.get(member_id)
        if member is None:
            return KafkaError.UNKNOWN_MEMBER_ID
        if generation != self.generation:
            # A member that has not yet had its new assignment is mid-rebalance.
            joining = any(e.kind == "assign" for e in member.events)
            return KafkaError.REBALANCE_IN_PROGRESS if joining else KafkaError.ILLEGAL_GENERATION
        return None

    # -- rebalancing -------------------------------------------------------------------------

    def rebalance(self, plan: dict[str, set[TP]]) -> None:
        """Hand out `plan` (member id -> partitions); members left out get nothing."""
        barrier = Barrier()
        for m in self.members.values():
            m.events.clear()  # undelivered events of an earlier rebalance are superseded
        revoking = {
            mid: (m.owned if not self.cooperative else m.owned - plan.get(mid, set()))
            for mid, m in self.members.items()
        }
        barrier.pending = {mid for mid, tps in revoking.items() if tps}
        owned_now = {tp for m in self.members.values() for tp in m.owned}
        for mid, m in self.members.items():
            new = plan.get(mid, set())
            revoke = revoking[mid]
            if revoke:
                m.events.append(Event("revoke", sorted(revoke)))
            if not self.cooperative:
                m.events.append(Event("assign", sorted(new), barrier))
                continue
            add = new - m.owned
            if self.protocol == "consumer":
                if revoke or add:
                    m.events.append(Event("assign", sorted(add), held=self._held(mid, add)))
                continue
            if not barrier.pending:
                m.events.append(Event("assign", sorted(add)))
                continue
            free = add - owned_now
            m.events.append(Event("assign", sorted(free)))  # first round: what nobody held
            m.events.append(Event("assign", sorted(add - free), barrier))
        self._barrier = barrier
        if not barrier.pending:
            self.generation += 1

    def _held(self, member_id: str, tps: set[TP]) -> Callable[[], bool]:
        def held() -> bool:
            return any(m.owned & tps for mid, m in self.members.items() if mid != member_id)

        return held

    def revoked(self, member: Member, tps: list[TP]) -> None:
        """A member delivered its revoke: the handover may go on."""
        member.owned.difference_update(tps)
        self._clear(member.id)

    def assigned(self, member: Member, tps: list[TP]) -> None:
        member.owned.update(tps)
        member.generation = self.generation

    def _clear(self, member_id: str) -> None:
        b = self._barrier
        if b is not None and member_id in b.pending:
            b.pending.discard(member_id)
            if not b.pending:
                self.generation += 1

    def join(self, member: Member) -> None:
        self.members[member.id] = member

    def leave(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is not None:
            member.events.clear()
            self._clear(member_id)
        return member

    # -- assignors ---------------------------------------------------------------------------

    def auto_plan(self, partitions: dict[str, int]) -> dict[str, set[TP]]:
        """range (eager) or cooperative-sticky over the members' subscriptions."""
        if self.cooperative:
            return self._sticky(partitions)
        plan: dict[str, set[TP]] = {mid: set() for mid in self.members}
        for topic, count in sorted(partitions.items()):
            mids = sorted(mid for mid, m in self.members.items() if m.subscribed(topic))
            if not mids:
                continue
            per, extra = divmod(count, len(mids))
            start = 0
            for i, mid in enumerate(mids):
                n = per + (1 if i < extra else 0)
                plan[mid].update((topic, p) for p in range(start, start + n))
                start += n
        return plan

    def _sticky(self, partitions: dict[str, int]) -> dict[str, set[TP]]:
        plan: dict[str, set[TP]] = {mid: set() for mid in self.members}
        wanted = {
            (t, p): [mid for mid, m in sorted(self.members.items()) if m.subscribed(t)]
            for t, n in sorted(partitions.items())
            for p in range(n)
        }
        wanted = {tp: mids for tp, mids in wanted.items() if mids}
        quota = -(-len(wanted) // max(1, len(self.members)))
        free: list[TP] = []
        for tp, mids in wanted.items():
            owner = next((mid for mid in mids if tp in self.members[mid].owned), None)
            if owner is not None and len(plan[owner]) < quota:
                plan[owner].add(tp)
            else:
                free.append(tp)
        for tp in free:
            mid = min(wanted[tp], key=lambda m: (len(plan[m]), m))
            plan[mid].add(tp)
        return plan
