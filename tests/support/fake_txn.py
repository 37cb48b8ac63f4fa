"""The transaction coordinator of the in-memory Kafka: transactional ids with their epochs
and open transactions, commit and abort markers, and the offsets a transaction carries.
Every method expects the cluster lock held."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from confluent_kafka import TIMESTAMP_CREATE_TIME

from tests.support.fake_log import TP, Txn, TxnState

if TYPE_CHECKING:
    from tests.support.fake_group import GroupMetadata
    from tests.support.fake_kafka import FakeCluster


class TxnCoordinator:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.ids: dict[str, tuple[int, Txn | None]] = {}  # id -> (epoch, open transaction)

    def claim(self, transactional_id: str) -> int:
        """init_transactions (or the broker timing a transaction out): abort what is open
        under this id, bump the epoch (fencing the instance that had it), return the epoch."""
        epoch, txn = self.ids.get(transactional_id, (-1, None))
        if txn is not None and txn.state is TxnState.OPEN:
            self.end(txn, commit=False)
        self.ids[transactional_id] = (epoch + 1, None)
        return epoch + 1

    def epoch(self, transactional_id: str) -> int:
        return self.ids.get(transactional_id, (-1, None))[0]

    def begun(self, txn: Txn) -> None:
        self.ids[txn.transactional_id] = (txn.epoch, txn)

    def expire(self) -> None:
        """Abort (and fence) what stayed open past its transaction.timeout.ms."""
        now = time.monotonic()
        for tid, (_, txn) in list(self.ids.items()):
            if txn is not None and txn.state is TxnState.OPEN and now - txn.started > txn.timeout_s:
                self.claim(tid)
                self.cluster.changed.notify_all()

    def end(self, txn: Txn, commit: bool) -> None:
        """Write the commit or abort marker (one offset in each partition added to it)."""
        c = self.cluster
        now = int(time.time() * 1000)
        for topic, p in sorted(txn.partitions):
            if topic in c.topics:
                log = c.topics[topic].partitions[p]
                log.append(None, None, None, (TIMESTAMP_CREATE_TIME, now), txn, control=True)
        txn.state = TxnState.COMMITTED if commit else TxnState.ABORTED
        for group_id, offsets in txn.offsets.items():
            g = c.group(group_id)
            if commit:
                g.committed.update(offsets)
            for tp in offsets:
                if g.pending.get(tp) is txn:
                    del g.pending[tp]
        epoch, current = self.ids.get(txn.transactional_id, (txn.epoch, None))
        if current is txn:
            self.ids[txn.transactional_id] = (epoch, None)
        c.changed.notify_all()

    def offsets_check(self, meta: GroupMetadata) -> int | None:
        """The error a TxnOffsetCommit with this group metadata gets (a zombie's), or None."""
        return self.cluster.group(meta.group_id).check_commit(
            meta.member_id, meta.generation_id, transactional=True
        )

    def add_offsets(self, txn: Txn, group_id: str, offsets: dict[TP, int]) -> None:
        txn.offsets.setdefault(group_id, {}).update(offsets)
        g = self.cluster.group(group_id)
        for tp in offsets:
            g.pending[tp] = txn
