"""The batch owner: one thread per worker process; the one that owns partition p of
jobstream.batches counts the batches of that partition and runs each callback once
(docs/workflows.md).

- Ownership: consumer group `<worker group>.batches`. On assignment each partition is read from
  its beginning to the end seen then (read_committed: a previous owner's open transaction has
  ended, committed or aborted), like a ledger view; only a restored partition closes batches.
- Closing: when every member of an open batch has a final outcome, its on_complete job (and
  on_success when no member was dead-lettered or cancelled) go to their job types' topics with
  ids derived from the batch id, with the closed batch record and the consumed offsets
  (carrying the group generation: a former owner cannot commit), in one transaction. Two owners
  for a moment publish the same callback id, and the callback's ledger drops the repeat.
- Nested: a batch opened by a member of another batch (ctx.batch in the member's handler) is
  that member's outcome: closing it writes the outer member's record in the same transaction
  (succeeded, or dead_lettered when the inner batch had dead letters).
- Retiring: a batch closed longer than `worker.batch_retention_s` ago gets tombstones for its
  record and every member's (the member ids derive from the batch id), in one transaction with
  the offsets, so neither the topic nor a new owner's restore grows without end.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
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

from jobstream.config.logging import get_logger
from jobstream.config.settings import Settings
from jobstream.config.topics import BATCHES_PARTITIONS, BATCHES_TOPIC
from jobstream.consumers.batches.book import Book, Entry
from jobstream.consumers.metrics import Metrics
from jobstream.consumers.runtime.clients import (
    LogEnds,
    owner_consumer_config,
    owner_producer_config,
)
from jobstream.producers.batches import callback_payload
from jobstream.producers.publisher import Publisher
from jobstream.schemas import batch_record as br

RETRY_MISSING_S = 30.0
RETIRE_EVERY_S = 10.0
RETIRE_MAX_RECORDS = 20_000  # tombstones per transaction


class MissingTopic(Exception):
    """The callback's job type has no topic (yet): `jobstream topics apply` creates it."""
WAIT_S = 0.05
Out = tuple[str, bytes, bytes | None, Any, int | None]  # topic, key, value, headers, part


class BatchOwner(threading.Thread):
    def __init__(self, settings: Settings, group: str, worker_id: str,
                 metrics: Metrics | None = None,
                 on_failure: Callable[[str], None] | None = None) -> None:
        super().__init__(name="jobstream-batches", daemon=True)
        self.settings = settings
        self.group = f"{group}.batches"
        self.worker_id = worker_id
        self.metrics = metrics
        self.log = get_logger("jobstream.batches", worker=worker_id)
        ws = settings.worker
        self.consumer = Consumer(owner_consumer_config(settings, self.group, 50))
        self.ends = LogEnds(settings, f"{self.group}-ends")
        self.txn_id = f"jobstream-{self.group}-{worker_id}"
        self._renew()
        self.books: dict[int, Book] = {}
        self.restore_to: dict[int, int] = {}
        self.restored: set[int] = set()
        self.position: dict[int, int] = {}
        self.closed = 0
        self.failures = 0
        self._fields: dict[str, set[str]] = {}
        self._topics: set[str] = set()
        self._topics_at = 0.0
        self.later: dict[tuple[int, str], float] = {}  # (partition, batch) -> when to retry
        self.retention_ms = int(ws.batch_retention_s * 1000)
        self._retire_at = 0.0
        self.retired = 0
        self._stopping = threading.Event()
        self.error: BaseException | None = None
        self._on_failure = on_failure

    def _renew(self) -> None:
        p = Producer(owner_producer_config(self.settings, self.txn_id,
                                           **{"partitioner": "murmur2_random"}))
        p.init_transactions(30)
        self.producer = p
        self.pub = Publisher(self.settings, make_producer=lambda _conf: p)

    # -- life --------------------------------------------------------------------------------

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        try:
            self.consumer.subscribe([BATCHES_TOPIC], on_assign=self._on_assign,
                                    on_revoke=self._on_revoke, on_lost=self._on_revoke)
            self.log.info("batches_started", group=self.group)
            while not self._stopping.is_set():
                msgs = self.consumer.consume(1000, timeout=WAIT_S)
                for msg in msgs:
                    self._receive(msg)
                if msgs:
                    self._gauge()
                self._close_ready()
                if time.monotonic() >= self._retire_at:
                    self._retire_at = time.monotonic() + RETIRE_EVERY_S
                    self._retire()
        except:  # noqa: E722 - a bare KafkaError (no Exception) can come out of a callback
            e = sys.exc_info()[1]
            self.error = e
            self.log.error("batches_failed", error=f"{type(e).__name__}: {e}")
            if self._on_failure is not None:
                self._on_failure("batches_failed")
        finally:
            for closer in (self.consumer.close, self.ends.close):
                with contextlib.suppress(Exception):
                    closer()
            self.producer.flush(5)

    # -- ownership -----------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.books, self.restore_to, self.position = {}, {}, {}
        self.restored, self.later = set(), {}
        for tp in parts:
            p = tp.partition
            self.books[p] = Book(prune=True)
            self.position[p] = 0
            self.restore_to[p] = self.ends.of(tp.topic, tp.partition)[1]
            if self.restore_to[p] <= 0:
                self.restored.add(p)
            tp.offset = OFFSET_BEGINNING
        consumer.assign(parts)
        self._gauge()
        self.log.info("batches_assigned", partitions=sorted(self.books),
                      offsets=sum(self.restore_to.values()))

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        if parts:
            self.log.info("batches_revoked", partitions=sorted(tp.partition for tp in parts))
        self.books, self.restore_to, self.position = {}, {}, {}
        self.restored, self.later = set(), {}
        consumer.unassign()
        self._gauge()

    def _receive(self, msg: Message) -> None:
        err = msg.error()
        p = msg.partition()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                if p in self.books and p not in self.restored and (
                        (msg.offset() or 0) >= self.restore_to.get(p, 0)):
                    self._restored(p)
                return
            if err.fatal():
                raise KafkaException(err)
            self.log.warning("batches_consumer_error", error=err.str())
            return
        book = self.books.get(p) if p is not None else None
        if book is None or p is None:
            return
        self.position[p] = (msg.offset() or 0) + 1
        book.apply(msg.key(), msg.value())
        if p not in self.restored and self.position[p] >= self.restore_to.get(p, 0):
            self._restored(p)

    def _restored(self, p: int) -> None:
        self.restored.add(p)
        book = self.books[p]
        self.log.info("batches_restored", partition=p, batches=len(book.entries),
                      open=book.open_count())
        self._gauge()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.batches_open.set(sum(b.open_count() for b in self.books.values()))

    # -- closing -----------------------------------------------------------------------------

    def _close_ready(self) -> None:
        plans: list[tuple[int, Entry]] = []
        now_s = time.monotonic()
        for (p, bid), at in list(self.later.items()):  # a callback's topic was missing
            if at <= now_s:
                del self.later[(p, bid)]
                if p in self.books and bid in self.books[p].entries:
                    self.books[p].entries[bid].closing = False
                    self.books[p].dirty.add(bid)
        for p in sorted(self.restored):
            book = self.books[p]
            for bid in book.ready():
                plans.append((p, book.entries[bid]))
        if not plans:
            return
        records: list[Out] = []
        closing: list[tuple[Entry, br.Batch]] = []
        now = int(time.time() * 1000)
        for p, e in plans:
            batch = e.batch
            assert batch is not None
            counts = e.counts()
            try:
                records += self._callbacks(batch, counts)
            except MissingTopic as ex:  # not one transaction held up by it: retried later
                self.log.warning("batch_callback_topic_missing", batch_id=batch.id,
                                 topic=str(ex), retry_s=RETRY_MISSING_S)
                e.closing = True
                self.later[(p, batch.id)] = now_s + RETRY_MISSING_S
                continue
            except (ValueError, KeyError) as ex:  # the callback's type is not known here
                self.log.error("batch_callback_invalid", batch_id=batch.id, error=str(ex))
                e.closing = True  # not planned again until a restart
                continue
            done = batch.closed(counts, now)
            records.append((BATCHES_TOPIC, batch.id.encode(), done.encode(), [],
                            br.partition_of(batch.id, BATCHES_PARTITIONS)))
            if batch.parent is not None:  # a nested batch: the outer member is final now
                outer, member = batch.parent
                outcome = br.DEAD_LETTERED if counts[br.DEAD_LETTERED] else br.SUCCEEDED
                records.append((BATCHES_TOPIC, br.member_key(outer, member),
                                br.encode_member(outcome, now), [],
                                br.partition_of(outer, BATCHES_PARTITIONS)))
            e.closing = True
            closing.append((e, done))
        if not closing:
            return
        try:
            self._commit(records)
        except KafkaException as ex:
            for e, _ in closing:
                e.closing = False
                if e.batch is not None:
                    self.books[br.partition_of(e.batch.id, BATCHES_PARTITIONS)].dirty.add(
                        e.batch.id)
            self._failed(ex)
            return
        self.failures = 0
        published = time.time()
        for e, done in closing:
            e.batch = done
            self.closed += 1
            if self.metrics is not None:
                self.metrics.batch_completions.inc()
                last = e.last_at
                if last:
                    self.metrics.batch_callback_latency.observe(max(0.0, published - last / 1000))
            self.log.info("batch_closed", batch_id=done.id, total=done.total, **done.counts)
        self._gauge()

    def _retire(self) -> None:
        """Tombstones for the batches closed longer than the retention ago (a bounded number
        per pass), then forget them."""
        before = int(time.time() * 1000) - self.retention_ms
        records: list[Out] = []
        gone: list[tuple[int, str]] = []
        due = [(p, bid) for p in sorted(self.restored) for bid in self.books[p].retirable(before)]
        for p, bid in due:
            e = self.books[p].entries[bid]
            members = ([br.member_id(bid, i) for i in range(e.batch.total)]
                       if e.batch is not None else list(e.outcomes))
            if records and len(records) + len(members) + 1 > RETIRE_MAX_RECORDS:
                break  # the rest next pass
            records += [(BATCHES_TOPIC, br.member_key(bid, m), None, [], p) for m in members]
            if e.batch is not None:
                records.append((BATCHES_TOPIC, bid.encode(), None, [], p))
            gone.append((p, bid))
        if not gone:
            return
        try:
            self._commit(records)
        except KafkaException as ex:
            self._failed(ex)
            return
        for p, bid in gone:
            book = self.books.get(p)
            if book is not None:
                book.entries.pop(bid, None)
                book.dirty.discard(bid)
        self.retired += len(gone)
        self.log.info("batches_retired", batches=len(gone), records=len(records))

    def _callbacks(self, batch: br.Batch, counts: dict[str, int]
                   ) -> list[Out]:
        out: list[Out] = []
        todo = [("complete", batch.on_complete)]
        if not counts[br.DEAD_LETTERED] and not counts[br.CANCELLED]:
            todo.append(("success", batch.on_success))
        for which, cb in todo:
            if cb is None:
                continue
            job_type, payload = cb
            fields = self._fields.get(job_type)
            if fields is None:
                raw = self.pub.registry.latest(job_type).raw
                fields = self._fields[job_type] = {
                    f["name"] for f in raw.get("fields", []) if isinstance(f, dict)}
            body = callback_payload(payload, batch.id, counts, batch.total, fields)
            jid = br.callback_id(batch.id, which)
            topic, jid, value, hdrs = self.pub.build(job_type, body, job_id=jid,
                                                     parent_job_id=batch.parent_job_id)
            topic = batch.topics.get(which, topic)  # where its publisher meant it to go
            if not self._topic_exists(topic):
                raise MissingTopic(topic)
            out.append((topic, jid.encode(), value, hdrs, None))
        return out

    def _topic_exists(self, topic: str) -> bool:
        """Whether the callback's topic exists (a produce to a missing one would hold the
        transaction, and every batch closing with it, for the transaction timeout)."""
        if topic in self._topics:
            return True
        if time.monotonic() - self._topics_at > 2.0:
            self._topics_at = time.monotonic()
            self._topics = set(self.producer.list_topics(timeout=5).topics)
        return topic in self._topics

    def _commit(self, records: list[Out]) -> None:
        p = self.producer
        p.begin_transaction()
        try:
            for topic, key, value, hdrs, partition in records:
                kwargs: dict[str, Any] = {"headers": hdrs}
                if partition is not None:
                    kwargs["partition"] = partition
                p.produce(topic, value, key, **kwargs)
            offsets = [TopicPartition(BATCHES_TOPIC, part, pos)
                       for part, pos in self.position.items()]
            if offsets:
                p.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(),
                                              30)
            p.commit_transaction(30)
        except KafkaException:
            raise
        except BaseException:
            p.abort_transaction(30)
            raise

    def _failed(self, e: KafkaException) -> None:
        """Nothing of the transaction is visible: the same batches are closed next pass (or by
        the next owner)."""
        err: Any = e.args[0] if e.args else None
        self.failures += 1
        self.log.warning("batches_close_aborted", error=str(err), failures=self.failures)
        try:
            if err is not None and err.fatal():
                raise KafkaException(err)
            self.producer.abort_transaction(30)
        except KafkaException:
            self._renew()
        self._stopping.wait(min(5.0, 0.2 * 2 ** (self.failures - 1)))


def start_batch_owner(settings: Settings, group: str, worker_id: str,
                      metrics: Metrics | None = None,
                      on_failure: Callable[[str], None] | None = None) -> BatchOwner | None:
    """The worker's batch owner thread, started (jobstream.batches is created if missing).
    None, with a warning, when the topic can neither be found nor created (no right to): the
    worker runs its jobs, and batches on this cluster wait for an owner that can."""
    from jobstream.consumers.batches.topic import ensure_topic

    try:
        ensure_topic(settings)
    except KafkaException as e:
        get_logger("jobstream.batches", worker=worker_id).warning(
            "batches_owner_not_started", error=str(e.args[0] if e.args else e),
            note="jobstream.batches is missing and cannot be created: create it with "
                 "`jobstream topics apply`")
        return None
    owner = BatchOwner(settings, group, worker_id, metrics, on_failure)
    owner.start()
    return owner
