"""The scheduler: one thread per worker process that dispatches the delayed jobs of the
partitions of T.scheduled it owns.

- Ownership: its own consumer group, `<worker group>.scheduler`, subscribed to the T.scheduled
  topics of the worker's job types. Only the owner of partition p dispatches p's jobs, and only
  after restoring p.
- Restore: on assignment, p's latest snapshot is loaded (consumers/scheduling/snapshot.py) and
  p is read from the offset it covers up to, or, without a usable snapshot, from its beginning
  (the topic is compacted: what is left is each job id's latest record), up to the true high
  watermark seen at assignment (clients.LogEnds; not the last stable offset, which stops
  before a transaction still open). The read_committed consumer reaches that mark only once
  every transaction open at assignment has ended, so a dispatch of the previous owner is
  known, committed or aborted, before this owner dispatches anything. The owner writes a
  snapshot once `worker.scheduler_snapshot_changes` records were read since the last one (at
  most every `scheduler_snapshot_every_s`) and when it stops.
- Dispatch: shortly before a job is due its record is read back by offset; at its due time
  (never before) the job goes to T partition p with the same key, value and headers (minus
  js-run-at), and its tombstone to T.scheduled p, with the consumed offsets, in one
  transaction. The offsets carry the group generation: a fenced (old) owner cannot commit.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from jobstream.config.durations import now_ms
from jobstream.config.logging import get_logger
from jobstream.config.settings import Settings
from jobstream.config.topics import job_topics
from jobstream.consumers.runtime.clients import (
    LogEnds,
    owner_consumer_config,
    owner_producer_config,
)
from jobstream.consumers.scheduling.index import PendingIndex, key_hash
from jobstream.consumers.scheduling.reader import ReadAhead
from jobstream.consumers.scheduling.snapshot import SnapshotError, Snapshots
from jobstream.producers.lanes import lane_destination
from jobstream.schemas import wire

# Records of jobs due within this window are read back ahead of time, so the dispatch at the
# due time does not wait for a fetch.
LOOKAHEAD_MS = 5000
BATCH = 500  # jobs per dispatch transaction
SNAPSHOT_AT_STOP = 1_000  # a stopping owner leaves a snapshot past this many changes


@dataclass
class _Near:
    due_ms: int
    offset: int
    msg: Message


@dataclass
class _Part:
    topic: str
    partition: int
    main: str
    restore_to: int  # high watermark at assignment; restored once read up to it
    restored: bool = False
    position: int = 0  # next offset to consume
    index: PendingIndex = field(default_factory=PendingIndex)
    near: list[_Near] = field(default_factory=list)
    restore_started: float = field(default_factory=time.monotonic)
    read_until: int = 0  # entries due up to here have been read back
    restore_s: float = 0.0  # assignment -> restored
    reading: dict[int, int] | None = None  # offset -> due of the read back under way
    changed: int = 0  # records read since the snapshot restored from or last written
    snapped_at: float = 0.0  # monotonic time of the last snapshot written
    from_snapshot: int | None = None  # the offset the snapshot restored from covered up to


def _headers(msg: Message) -> list[tuple[str, Any]]:
    raw: Any = msg.headers() or []  # a list of pairs from the consumer
    return list(raw)


def due_of(headers: list[tuple[str, Any]]) -> int:
    """A record's due time; a missing or malformed js-run-at is due now (0). Scans the raw
    headers for that one (decoding all of them was most of a restore's time per entry); the
    last one wins, as in wire.decode_headers."""
    for name, value in reversed(headers):
        if name == wire.RUN_AT:
            try:
                return max(0, int(value))
            except (TypeError, ValueError):
                return 0
    return 0


class Scheduler(threading.Thread):
    def __init__(self, settings: Settings, job_types: list[str], group: str, worker_id: str,
                 on_failure: Callable[[str], None] | None = None) -> None:
        super().__init__(name="jobstream-scheduler", daemon=True)
        self.settings = settings
        self.group = f"{group}.scheduler"
        self.log = get_logger("jobstream.scheduler", worker=worker_id)
        tops = [job_topics(jt, settings.job(jt)) for jt in job_types]
        self.main_of = {t.scheduled: t.main for t in tops}
        self.snapshots_of = {t.scheduled: t.snapshots for t in tops}
        self.lanes_of = {t.scheduled: t.lanes for t in tops}  # a due job goes to its lane
        ws = settings.worker
        self.consumer = Consumer(owner_consumer_config(
            settings, self.group, 100, **{"partition.assignment.strategy": "roundrobin"}))
        self.txn_id = f"jobstream-{self.group}-{worker_id}"
        self.producer = self._new_producer()
        self.reader = ReadAhead(settings, f"{self.group}-reader")
        self.ends = LogEnds(settings, f"{self.group}-ends")
        self.snapshots = Snapshots(settings, f"{self.group}-snapshots")
        # 0 changes: no snapshots (none written, none loaded)
        self.snapshot_changes = ws.scheduler_snapshot_changes
        self.snapshot_every_s = ws.scheduler_snapshot_every_s
        self.snapshot_at_stop = min(SNAPSHOT_AT_STOP, self.snapshot_changes)
        self.parts: dict[tuple[str, int], _Part] = {}
        self._stopping = threading.Event()
        self.dispatched = 0
        self.error: BaseException | None = None
        self._on_failure = on_failure

    def _new_producer(self) -> Producer:
        p = Producer(owner_producer_config(self.settings, self.txn_id,
                                           **{"message.max.bytes": 1_048_588}))
        p.init_transactions(30)
        return p

    # -- life --------------------------------------------------------------------------------

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        try:
            self.reader.start()
            self.consumer.subscribe(list(self.main_of), on_assign=self._on_assign,
                                    on_revoke=self._on_revoke, on_lost=self._on_revoke)
            self.log.info("scheduler_started", topics=sorted(self.main_of), group=self.group)
            while not self._stopping.is_set():
                for msg in self.consumer.consume(500, timeout=self._wait_s()):
                    self._receive(msg)
                self._prefetch()
                self._dispatch()
                self._snapshot_due()
        except:  # noqa: E722 - a bare KafkaError (no Exception) can come out of a callback
            e = sys.exc_info()[1]
            # A worker without its scheduler would hold partitions nobody dispatches: it stops
            # (gracefully), and its restart, or another worker, takes them over.
            self.error = e
            self.log.error("scheduler_failed", error=f"{type(e).__name__}: {e}")
            if self._on_failure is not None:
                self._on_failure("scheduler_failed")
        finally:
            self._close()

    def _close(self) -> None:
        if self.error is None and self.snapshot_changes:
            for st in list(self.parts.values()):
                if st.restored and st.changed >= self.snapshot_at_stop:
                    self._snapshot(st)
        for closer in (self.consumer.close, self.reader.stop, self.snapshots.close,
                       self.ends.close):
            with contextlib.suppress(Exception):
                closer()
        self.producer.flush(5)

    def _wait_s(self) -> float:
        due = [n.due_ms for p in self.parts.values() for n in p.near[:1]]
        if not due:
            return 0.2
        return min(0.2, max(0.0, (min(due) - now_ms()) / 1000))

    # -- ownership -----------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        spans: dict[str, dict[int, tuple[int, int]]] = {}
        for tp in parts:
            low, high = self.ends.of(tp.topic, tp.partition)
            st = _Part(tp.topic, tp.partition, self.main_of[tp.topic], restore_to=high)
            st.restored = high <= 0
            self.parts[(tp.topic, tp.partition)] = st
            tp.offset = OFFSET_BEGINNING  # the whole partition: every pending entry
            if high > low and self.snapshot_changes:
                spans.setdefault(tp.topic, {})[tp.partition] = (low, high)
        # All partitions' snapshots read side by side (a read is mostly round trips).
        loaded = {t: self.snapshots.load(self.snapshots_of[t], sp) for t, sp in spans.items()}
        for tp in parts:
            st = self.parts[(tp.topic, tp.partition)]
            snap = loaded.get(tp.topic, {}).get(tp.partition)
            if snap is None:
                continue
            if isinstance(snap, SnapshotError):
                self.log.info("scheduler_no_snapshot", topic=tp.topic, partition=tp.partition,
                              reason=str(snap))
                continue
            st.index, st.position, tp.offset = snap.index, snap.covers, snap.covers
            st.from_snapshot = snap.covers
            self.log.info("scheduler_snapshot_loaded", topic=tp.topic, partition=tp.partition,
                          pending=len(snap.index), covers=snap.covers,
                          seconds=round(snap.seconds, 3))
            if st.position >= st.restore_to:
                self._restored(st)  # nothing written since the snapshot
        consumer.assign(parts)
        self.log.info("scheduler_assigned", partitions=[f"{p.topic}[{p.partition}]"
                                                        for p in parts])

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        for tp in parts:
            self.parts.pop((tp.topic, tp.partition), None)
        consumer.unassign()

    def _receive(self, msg: Message) -> None:
        st = self.parts.get((msg.topic() or "", msg.partition() or 0))
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                if st is not None and not st.restored and (msg.offset() or 0) >= st.restore_to:
                    self._restored(st)
                return
            if err.fatal():
                raise KafkaException(err)
            self.log.warning("scheduler_consumer_error", error=err.str())
            return
        if st is None:
            return
        off = msg.offset() or 0
        st.position = off + 1
        st.changed += 1
        key = msg.key() or b""
        if msg.value() is None:
            st.index.remove(key_hash(key))  # dispatched or cancelled
        else:
            due = due_of(_headers(msg))
            st.index.add(key_hash(key), off, due)
            st.read_until = min(st.read_until, due)  # due within the window read: read again
        if not st.restored and st.position >= st.restore_to:
            self._restored(st)

    def _restored(self, st: _Part) -> None:
        st.restored = True
        st.restore_s = time.monotonic() - st.restore_started
        self.log.info("scheduler_restored", topic=st.topic, partition=st.partition,
                      pending=len(st.index), offsets=st.restore_to,
                      seconds=round(st.restore_s, 3))

    # -- snapshots -----------------------------------------------------------------------------

    def _snapshot_due(self) -> None:
        now = time.monotonic()
        for st in self.parts.values():
            if (self.snapshot_changes and st.restored and st.changed >= self.snapshot_changes
                    and now - st.snapped_at >= self.snapshot_every_s):
                self._snapshot(st)

    def _snapshot(self, st: _Part) -> None:
        """Write st's index as a snapshot covering what was read; a failure only means the
        next owner reads more."""
        extra = [(n.due_ms, n.offset) for n in st.near]
        extra += [(due, off) for off, due in (st.reading or {}).items()]
        t0 = time.monotonic()
        st.snapped_at = t0
        try:
            chunks = self.snapshots.write(self.producer, self.snapshots_of[st.topic],
                                          st.partition, st.index.to_bytes(extra), st.position)
        except KafkaException as e:
            self.log.warning("scheduler_snapshot_failed", topic=st.topic, partition=st.partition,
                             error=str(e))
            return
        st.changed = 0
        self.log.info("scheduler_snapshot_written", topic=st.topic, partition=st.partition,
                      pending=len(st.index), covers=st.position, chunks=chunks,
                      seconds=round(time.monotonic() - t0, 3))

    # -- dispatch ------------------------------------------------------------------------------

    def _prefetch(self) -> None:
        """Have the records of the entries due within LOOKAHEAD_MS read back (on the reader's
        thread, one read per partition at a time), and take the reads that finished."""
        for token, found, left in self.reader.results():
            st: _Part = token
            due_of_off, st.reading = st.reading or {}, None
            if self.parts.get((st.topic, st.partition)) is not st:
                continue  # revoked meanwhile: the next owner reads its own
            for off in left:
                st.index.requeue(off, due_of_off[off])  # read again next time
            for off, msg in found.items():
                if st.index.current(key_hash(msg.key() or b"")) == off:
                    st.near.append(_Near(due_of_off[off], off, msg))
            st.near.sort(key=lambda n: n.due_ms)
        now = now_ms()
        until = now + LOOKAHEAD_MS
        for st in self.parts.values():
            # In half-window steps: a read costs a fetch round trip per partition (a seek per
            # gap), so reading every loop (each new second) would read little at a time.
            if (not st.restored or st.reading is not None
                    or st.read_until - now > LOOKAHEAD_MS // 2):
                continue
            st.read_until = until
            entries = st.index.take_until(until)
            if entries:
                st.reading = {off: due for due, off in entries}
                self.reader.submit(st, st.topic, st.partition, list(st.reading))

    def _dispatch(self) -> None:
        now = now_ms()
        batch: list[tuple[_Part, _Near]] = []
        for st in self.parts.values():
            while st.near and st.near[0].due_ms <= now and len(batch) < BATCH:
                n = st.near.pop(0)
                # A tombstone or a newer record seen since the read: cancelled or moved.
                if st.index.current(key_hash(n.msg.key() or b"")) == n.offset:
                    batch.append((st, n))
        if not batch:
            return
        try:
            self._commit(batch)
        except KafkaException as e:
            self._failed(batch, e)
            return
        for st, n in batch:
            st.index.remove(key_hash(n.msg.key() or b""), n.offset)
        self.dispatched += len(batch)
        late = [now_ms() - n.due_ms for _, n in batch]
        self.log.debug("scheduler_dispatched", jobs=len(batch), max_late_ms=max(late))

    def _commit(self, batch: list[tuple[_Part, _Near]]) -> None:
        p = self.producer
        p.begin_transaction()
        try:
            for st, n in batch:
                m = n.msg
                raw = _headers(m)
                hdrs = [(k, v) for k, v in raw if k not in (wire.RUN_AT, wire.KEY)]
                key = dict(raw).get(wire.KEY) or m.key()
                dest = lane_destination(st.main, self.lanes_of.get(st.topic, ()), hdrs)
                p.produce(dest, m.value(), key, partition=st.partition, headers=hdrs)
                p.produce(st.topic, None, m.key(), partition=st.partition)
            offsets = [TopicPartition(st.topic, st.partition, st.position)
                       for st in {id(s): s for s, _ in batch}.values()]
            p.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
            p.commit_transaction(30)
        except KafkaException:
            raise
        except BaseException:
            p.abort_transaction(30)
            raise

    def _failed(self, batch: list[tuple[_Part, _Near]], e: KafkaException) -> None:
        """Nothing of the batch is visible: abort, and keep its jobs pending here (unless the
        partition went away, then its next owner has them)."""
        err: Any = e.args[0] if e.args else None
        self.log.warning("scheduler_dispatch_aborted", jobs=len(batch), error=str(err))
        try:
            if err is not None and err.fatal():
                raise KafkaException(err)
            self.producer.abort_transaction(30)
        except KafkaException:
            # Fenced or fatal: a new producer under the same id finishes the abort for us.
            self.producer = self._new_producer()
        for st, n in batch:
            if self.parts.get((st.topic, st.partition)) is st:
                st.index.requeue(n.offset, n.due_ms)
