"""FakeConsumer: confluent_kafka.Consumer's methods on the in-memory cluster (fake_kafka.py).

Rebalance callbacks run from poll()/consume()/close() as the binding runs them: an exception
in one propagates from that call, and when the callback did not (re)assign, the binding's
fallback does (assign/unassign when eager, incremental when cooperative). What it fetches and
its positions are kept by a Fetcher (fake_fetch.py)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, Message, TopicPartition

from tests.support import fake_errors as fe
from tests.support.fake_fetch import Fetcher
from tests.support.fake_group import GroupMetadata, Member, new_member_id
from tests.support.fake_log import tp_list

if TYPE_CHECKING:
    from confluent_kafka.admin import ClusterMetadata

    from tests.support.fake_kafka import FakeCluster
    from tests.support.fake_log import TP

Callback = Callable[[Any, list[TopicPartition]], None]


class FakeConsumer:
    def __init__(self, conf: dict[str, Any], *, cluster: FakeCluster) -> None:
        fe.check_consumer_conf(conf)
        self.cluster = cluster
        self.conf = dict(conf)
        self.group_id = str(conf["group.id"])
        self.client_id = str(conf.get("client.id", "rdkafka"))
        self.read_committed = conf.get("isolation.level", "read_committed") == "read_committed"
        # librdkafka's default: commit the positions every interval, on revoke and at close.
        self.auto_commit = bool(conf.get("enable.auto.commit", True))
        self.auto_commit_s = int(conf.get("auto.commit.interval.ms", 5000)) / 1000
        self._auto_committed = time.monotonic()
        self.cooperative = conf.get("group.protocol") == "consumer" or "cooperative" in str(
            conf.get("partition.assignment.strategy", "")
        )
        self.error_cb: Callable[[KafkaError], None] | None = conf.get("error_cb")
        self.on_commit: Callable[[KafkaError | None, list[TopicPartition]], None] | None = (
            conf.get("on_commit")
        )
        self.fetcher = Fetcher(cluster, conf)
        self.member: Member | None = None
        self.topics: list[str] = []
        self.callbacks: dict[str, Callback | None] = {}
        self.closed = False
        self._lost: list[TP] | None = None  # a lost assignment, reported at the next poll
        self._rejoin = False
        self._reassigned = False  # the rebalance callback (re)assigned itself
        self._events: deque[Callable[[], None]] = deque()  # commit results
        self.errors: deque[Message] = deque()  # error events for the next poll
        self._outage_seen = 0
        cluster.clients.append(self)

    # -- group membership ----------------------------------------------------------------------

    def subscribe(
        self,
        topics: list[str],
        on_assign: Callback | None = None,
        on_revoke: Callback | None = None,
        on_lost: Callback | None = None,
    ) -> None:
        self._open()
        self.topics = list(topics)
        self.callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}
        with self.cluster.lock:
            if self.member is None:
                self._join()
            else:
                self.member.topics = self.topics
                self.cluster.membership_changed(self.group_id)

    def _join(self) -> None:
        self.member = Member(new_member_id(self.client_id), self, self.topics)
        protocol = "consumer" if self.conf.get("group.protocol") == "consumer" else (
            "cooperative" if self.cooperative else "eager"
        )
        self.cluster.group(self.group_id, protocol).join(self.member)
        self.cluster.membership_changed(self.group_id)

    def unsubscribe(self) -> None:
        self._open()
        self._leave()
        self.topics = []

    def _leave(self) -> None:
        member = self.member
        if member is None:
            return
        if member.owned:
            self._deliver("revoke", sorted(member.owned))
        with self.cluster.lock:
            self.cluster.group(self.group_id).leave(member.id)
            self.member = None
            self.fetcher.assign([])
            self.cluster.membership_changed(self.group_id)

    def lose(self) -> None:
        """The session expired (cluster.lose): the group moved on without this member."""
        member = self.member
        if member is not None:
            self.cluster.group(self.group_id).leave(member.id)
            self.member = None
            self._lost = sorted(member.owned) or None
            self._rejoin = bool(self.topics)

    def memberid(self) -> str | None:
        return self.member.id if self.member is not None else None

    def consumer_group_metadata(self) -> GroupMetadata:
        self._open()
        m = self.member
        if m is None:
            return GroupMetadata(self.group_id, -1, "")
        return GroupMetadata(self.group_id, m.generation, m.id)

    def _serve_rebalance(self) -> None:
        """Deliver due rebalance events (one at a time, outside the lock)."""
        c = self.cluster
        while True:
            with c.lock:
                if c.down:
                    return
                if self._lost is not None:
                    lost, self._lost = self._lost, None
                    kind, tps = "lost", lost
                elif self._rejoin:
                    self._rejoin = False
                    self._join()
                    continue
                else:
                    m = self.member
                    if m is None or not m.events or not m.events[0].due():
                        return
                    ev = m.events.pop(0)
                    kind, tps = ev.kind, ev.tps
                    if kind == "assign":
                        c.group(self.group_id).assigned(m, tps)
            self._deliver(kind, tps)

    def _deliver(self, kind: str, tps: list[TP]) -> None:
        if kind == "revoke":
            self._commit_positions()
        cb = self.callbacks.get(kind)
        if kind == "lost" and cb is None:
            cb = self.callbacks.get("revoke")  # as librdkafka: on_revoke stands in
        self._reassigned = False
        raised: BaseException | None = None
        if cb is not None:
            try:
                cb(self, tp_list(tps))
            except BaseException as e:  # re-raised from this poll, after the fallback
                raised = e
        if not self._reassigned:
            if kind == "assign":
                (self.incremental_assign if self.cooperative else self.assign)(tp_list(tps))
            elif self.cooperative:
                self.incremental_unassign(tp_list(tps))
            else:
                self.unassign()
        if kind == "revoke":
            with self.cluster.lock:
                if self.member is not None:
                    self.cluster.group(self.group_id).revoked(self.member, tps)
                self.cluster.changed.notify_all()
        if raised is not None:
            raise raised

    # -- the assignment --------------------------------------------------------------------------

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._change(partitions, self.fetcher.assign, "assign", incremental=False)

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self._change(partitions, self.fetcher.add, "incremental_assign", incremental=True)

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        self._change(partitions, self.fetcher.remove, "incremental_unassign", incremental=True)

    def unassign(self) -> None:
        self._change([], self.fetcher.assign, "unassign", incremental=None)

    def _change(
        self,
        partitions: list[TopicPartition],
        how: Callable[[list[TopicPartition]], None],
        call: str,
        incremental: bool | None,
    ) -> None:
        self._open()
        if self.member is not None and incremental is not None and incremental != self.cooperative:
            kind = "COOPERATIVE" if self.cooperative else "EAGER"
            use = "incremental_assign()" if self.cooperative else "assign()"
            fe.fail(
                KafkaError._STATE,
                f"{call}: changes to the current assignment must be made using {use} "
                f"when rebalance protocol type is {kind}",
            )
        with self.cluster.lock:
            how(partitions)
            self._reassigned = True
            self.cluster.changed.notify_all()

    def assignment(self) -> list[TopicPartition]:
        self._open()
        with self.cluster.lock:
            return self.fetcher.assignment()

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._set_paused(partitions, True)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._set_paused(partitions, False)

    def _set_paused(self, partitions: list[TopicPartition], paused: bool) -> None:
        self._open()
        with self.cluster.lock:
            self.fetcher.set_paused(partitions, paused)
            self.cluster.changed.notify_all()

    def seek(self, partition: TopicPartition) -> None:
        self._open()
        with self.cluster.lock:
            self.fetcher.seek(partition)
            self.cluster.changed.notify_all()

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        self._open()
        with self.cluster.lock:
            return self.fetcher.positions(partitions)

    # -- offsets -----------------------------------------------------------------------------------

    def committed(
        self, partitions: list[TopicPartition], timeout: float | None = None
    ) -> list[TopicPartition]:
        self._open()
        c = self.cluster
        with c.lock:
            tps = [(p.topic, p.partition) for p in partitions]
            group = c.group(self.group_id)

            def unstable() -> bool:  # read_committed asks for stable offsets (KIP-447)
                return self.read_committed and any(tp in group.pending for tp in tps)

            if c.down or unstable():
                c.wait_until(c.deadline(timeout), lambda: not c.down and not unstable())
                if c.down or unstable():
                    fe.fail(
                        KafkaError._TIMED_OUT, "Failed to get committed offsets: Local: Timed out"
                    )
            return [TopicPartition(t, p, group.committed.get((t, p), OFFSET_INVALID))
                    for t, p in tps]

    def commit(
        self,
        message: Message | None = None,
        offsets: list[TopicPartition] | None = None,
        asynchronous: bool = True,
    ) -> list[TopicPartition] | None:
        self._open()
        c = self.cluster
        with c.lock:
            if message is not None:
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                assert topic is not None and partition is not None and offset is not None
                tps = [TopicPartition(topic, partition, offset + 1)]
            elif offsets is not None:
                tps = [TopicPartition(p.topic, p.partition, p.offset) for p in offsets]
            else:
                tps = self.fetcher.current()
            valid = {(p.topic, p.partition): p.offset for p in tps if p.offset >= 0}
            m = self.member
            err = c.commit_offsets(
                self.group_id, m.id if m else "", m.generation if m else -1, valid
            )
        if asynchronous:
            with c.lock:
                cb = self.on_commit
                if cb is not None:
                    self._events.append(lambda: cb(err, tps))
                    c.changed.notify_all()
            return None
        if err is not None:
            raise KafkaException(err)
        return tps

    def _commit_positions(self) -> None:
        """Auto commit: the positions that moved since the group's last commit, if any."""
        if not self.auto_commit:
            return
        self._auto_committed = time.monotonic()
        with self.cluster.lock:
            committed = self.cluster.group(self.group_id).committed
            moved = [
                tp
                for tp in self.fetcher.current()
                if tp.offset >= 0 and committed.get((tp.topic, tp.partition)) != tp.offset
            ]
        if moved:
            self.commit(offsets=moved, asynchronous=True)

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float | None = None, cached: bool = False
    ) -> tuple[int, int]:
        self._open()
        tp = (partition.topic, partition.partition)
        if cached:
            with self.cluster.lock:
                return self.fetcher.cached(tp)
        return self.cluster.watermark_offsets(tp, self.read_committed)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        self._open()
        return self.cluster.metadata(topic, timeout)

    # -- fetching ----------------------------------------------------------------------------------

    def poll(self, timeout: float | None = None) -> Message | None:
        msgs = self._consume(1, timeout)
        return msgs[0] if msgs else None

    def consume(self, num_messages: int = 1, timeout: float | None = -1) -> list[Message]:
        return self._consume(num_messages, timeout)

    def _consume(self, n: int, timeout: float | None) -> list[Message]:
        """Serve callbacks and take what is there; wait (up to the timeout) while nothing is.
        Callbacks served do not end the wait, as in librdkafka's consumer poll."""
        self._open()
        c = self.cluster
        c.report_outage(self)
        deadline = c.deadline(timeout)
        if self.auto_commit and time.monotonic() - self._auto_committed >= self.auto_commit_s:
            self._commit_positions()
        while True:
            self._serve_events()
            self._serve_rebalance()
            with c.lock:
                out = self._take(n)
                if out or not c.wait_until(deadline, self._ready):
                    return out

    def _ready(self) -> bool:
        """Something for this consumer's poll (cluster lock held)."""
        if self._events or self.errors:
            return True
        if self.cluster.down:
            return False
        if self._lost is not None or self._rejoin:
            return True
        m = self.member
        if m is not None and m.events and m.events[0].due():
            return True
        return self.fetcher.ready()

    def _serve_events(self) -> None:
        while True:
            with self.cluster.lock:
                if not self._events:
                    return
                ev = self._events.popleft()
            ev()

    def _take(self, n: int) -> list[Message]:
        """Injected errors first, then what the fetcher has (cluster lock held)."""
        out: list[Message] = []
        while self.errors and len(out) < n:
            out.append(self.errors.popleft())
        if self.cluster.down or len(out) >= n:
            return out
        self.cluster.expire_transactions()
        return out + self.fetcher.take(n - len(out))

    # -- closing -----------------------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self._commit_positions()
        self._serve_events()
        self._leave()
        self._serve_events()
        self.closed = True
        with self.cluster.lock:
            self.fetcher.assign([])
            self.cluster.changed.notify_all()

    def _open(self) -> None:
        if self.closed:
            raise RuntimeError("Consumer closed")

