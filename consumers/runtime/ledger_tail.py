"""Following the held ledger partitions past their restore, for the `cancelled` entries that
`jobs cancel` writes (producers/cancel.py). A worker writes its own entries and knows them; a
cancel comes from elsewhere, so without this the worker would learn of it only at its next
restore.

One thread, one consumer for all held partitions, each read from where its restore ended
(`LedgerView.read_to`). read_uncommitted: a cancel is written outside any transaction, and a
worker's open (or dangling) transaction on the same partition must not hold it back; the
other entries (the worker's own, some of them in transactions that may abort) are skipped by
their first byte without decoding. A cancel read goes into its view's `cancelled`, which the
dispatcher asks before a job starts and again just before its handler runs.

The fence: the canceller must be able to tell when a cancel is in effect. For each source
partition (T, a retry tier) this worker owns whose ledger view is ready, the tail commits, in
the group `<group>.cancel-fence` (which nobody joins), the offset of the ledger partition it
has read up to, under the source partition's name. A cancel written at ledger offset L is in
effect for that source partition once its fence is past L: every job of it that starts after
that sees the cancel. A new owner of the partition restores the ledger after the old owner let
it go, so it reads the cancel too; a fence a dead owner left behind only delays the canceller.
Cost: one more fetch of each held ledger partition (a few bytes per job, the worker's own
entries read back and skipped) and one small commit per fence interval."""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings
from jobstream.consumers.runtime.ledger_view import LedgerView
from jobstream.schemas.ledger_entry import CANCELLED_BYTE, cancelled_at, cancelled_job

TP = tuple[str, int]
FENCE_S = 0.2  # how often the fence is committed (when it moved; every 5 s when it did not)


def fence_group(group: str) -> str:
    """The group the ledger tails commit their fences in (never joined)."""
    return f"{group}.cancel-fence"


class LedgerTail:
    def __init__(self, settings: Settings, group: str) -> None:
        self.settings = settings
        self.group = group
        # Replaced whole by the poll thread (sync), read by the tail thread: the ready views,
        # and per owned source partition its ledger partition.
        self._state: tuple[dict[TP, LedgerView], dict[TP, TP]] = ({}, {})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None  # the last error the tail met (it goes on)
        self.read = 0  # cancel entries read (tests, metrics)

    def sync(self, views: dict[TP, LedgerView], sources: dict[TP, TP]) -> None:
        """The ready views and the owned source partitions (poll thread)."""
        self._state = (dict(views), dict(sources))
        if self._thread is None and views:
            self._thread = threading.Thread(target=self._run, name="js-ledger-tail",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _consumer(self) -> Any:
        return Consumer(client_config(self.settings.kafka, **{
            "group.id": fence_group(self.group),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_uncommitted",
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,  # how late a cancel can be seen, at most
            # Held by the broker until then: a fetch per ledger record (the worker's own
            # entries, read back to be skipped) was a tenth of the broker's CPU per job.
            "fetch.min.bytes": 1 << 20,
        }))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as e:  # a broken client: start over with a new one
                self.error = f"{type(e).__name__}: {e}"
                self._stop.wait(1.0)

    def _follow(self) -> None:
        consumer = self._consumer()
        assigned: dict[TP, LedgerView] = {}
        pos: dict[TP, int] = {}  # the next offset to read, per ledger partition
        fenced: dict[TP, int] = {}
        last_fence = last_full = 0.0
        try:
            while not self._stop.is_set():
                views = self._state[0]
                gone = [tp for tp, v in assigned.items() if views.get(tp) is not v]
                if gone:
                    consumer.incremental_unassign([TopicPartition(t, p) for t, p in gone])
                    for tp in gone:
                        del assigned[tp]
                        pos.pop(tp, None)
                new = [(tp, v) for tp, v in views.items() if tp not in assigned]
                if new:
                    for tp, v in new:
                        assigned[tp], pos[tp] = v, v.read_to
                    consumer.incremental_assign(
                        [TopicPartition(t, p, v.read_to) for (t, p), v in new])
                if not assigned:
                    self._stop.wait(0.05)
                    continue
                # One record per job comes back here (the worker's own entries): each costs
                # two calls unless it is a cancel; how far each partition was read is asked
                # of the consumer once per fence instead of kept per record.
                for msg in consumer.consume(500, timeout=0.05):
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            self.error = err.str()
                        continue
                    value = msg.value()
                    if value and value[0] == CANCELLED_BYTE:
                        view = assigned.get((msg.topic() or "", msg.partition() or 0))
                        key, at = msg.key(), cancelled_at(value)
                        job_id = cancelled_job(key) if key is not None else None
                        if view is not None and job_id is not None and at is not None:
                            view.cancelled[job_id] = at
                            self.read += 1
                now = time.monotonic()
                if now - last_fence >= FENCE_S:
                    last_fence = now
                    full = now - last_full >= 5.0
                    if full:
                        last_full = now
                    self._read_to(consumer, pos)
                    self._fence(consumer, assigned, pos, fenced, full)
        finally:
            consumer.close()

    @staticmethod
    def _read_to(consumer: Any, pos: dict[TP, int]) -> None:
        """How far each assigned partition was read: the consumer's position (the offset after
        the last record it returned), or where it was assigned when it returned none yet."""
        if not pos:
            return
        for tpo in consumer.position([TopicPartition(t, p) for t, p in pos]):
            at = tpo.offset
            if at >= 0 and at > pos.get((tpo.topic, tpo.partition), 0):
                pos[(tpo.topic, tpo.partition)] = at

    def _fence(self, consumer: Any, assigned: dict[TP, LedgerView], pos: dict[TP, int],
               fenced: dict[TP, int], full: bool) -> None:
        views, sources = self._state
        offsets = []
        for src, ltp in sources.items():
            at = pos.get(ltp)
            if views.get(ltp) is not assigned.get(ltp):
                continue  # the source dispatches from a view this loop has not taken up yet
            if at is not None and (full or fenced.get(src) != at):
                offsets.append(TopicPartition(src[0], src[1], at))
                fenced[src] = at
        if offsets:
            consumer.commit(offsets=offsets, asynchronous=True)
