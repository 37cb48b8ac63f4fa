"""The dedup ledger: T.ledger (compacted) maps job id -> outcome. A worker keeps a compact view
of each ledger partition whose number it owns, restored in the background on assignment.

Besides completions it holds routing marks: a record retried or dead-lettered is marked by its
position (topic, partition, offset), in the same transaction as the retry or dead letter (at
least once: once the retry or dead letter is acknowledged). The offset commit can trail the
mark (an earlier offset still running), so a next owner re-reading that record skips it
instead of routing it again. Keyed by position, not job id: a job replayed from the DLQ
arrives at a new position and runs.

Entries written in the current commit interval stay `pending` until their transaction commits
(at least once: until the broker acknowledges them): an aborted interval must not make a job
look done.

It holds the jobs `jobs cancel` cancelled (`cancelled` entries, keyed by job id): the canceller
writes them, not a worker, so besides the restore a tail (ledger_tail.py) follows each held
partition for the ones written later.

And it holds crash evidence: per source partition one key (`!started/topic/partition`) whose
latest value lists the handler runs that started and had not ended (crashes.py). It is written
outside any transaction, so it survives the process that wrote it; the restore keeps
the latest value per key on the view, whose first byte (status `started`) tells it apart."""

from __future__ import annotations

import io
import json
import queue
import threading
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, TopicPartition

from jobstream.config.kafka import client_config
from jobstream.config.settings import Mode, Settings
from jobstream.consumers.runtime.clients import LogEnds
from jobstream.consumers.runtime.heads import HEAD_MARK, decode_head
from jobstream.consumers.runtime.ledger_tail import LedgerTail
from jobstream.consumers.runtime.ledger_view import ROUTED_PREFIX, LedgerView
from jobstream.schemas.ledger_entry import (
    CANCELLED_BYTE,
    RAW_SCHEMA,
    STARTED,
    STARTED_BYTE,
    cancelled_at,
    cancelled_job,
    entry_finished_at,
)
from jobstream.schemas.registry import INTERNAL_DIR, avro_reader, avro_writer

# started.avsc names the ledger's status enum: one definition of it, in ledger.avsc.
_STARTED_SCHEMA = json.loads((INTERNAL_DIR / "started.avsc").read_text())
_STARTED_SCHEMA["fields"][0]["type"] = RAW_SCHEMA["fields"][0]["type"]
_write_started = avro_writer(_STARTED_SCHEMA)
_read_started = avro_reader(_STARTED_SCHEMA)
STARTED_PREFIX = "!started/"
ROUTED = {"retried": "retried", "dead_lettered": "dead_lettered"}  # outcome -> mark status

LedgerTP = tuple[str, int]
RETAIN_S = 120.0  # how long the view of a partition given up is kept for a quick return


def routed_key(topic: str, partition: int, offset: int) -> str:
    """The ledger key marking a record as routed (a job id would have to spell out this very
    position to collide with it)."""
    return f"{ROUTED_PREFIX}{topic}/{partition}/{offset}"


def started_key(topic: str, partition: int) -> str:
    """The ledger key of a source partition's crash evidence."""
    return f"{STARTED_PREFIX}{topic}/{partition}"


def encode_started(
    written_at_ms: int, worker: str, live: list[int], deaths: dict[int, tuple[tuple[str, int], ...]]
) -> bytes:
    return _write_started(
        {
            "status": STARTED,
            "written_at": written_at_ms,
            "worker": worker,
            "live": live,
            "deaths": [
                {"offset": o, "starts": [{"worker": w, "at": at} for w, at in starts]}
                for o, starts in deaths.items()
            ],
        }
    )


def decode_started(value: bytes) -> dict[int, tuple[tuple[str, int], ...]] | None:
    """Offset -> the runs of it whose worker died (worker, when last seen running), from a
    value read back: the writer is gone by then, so what it had running died with it."""
    if value[:1] != bytes([STARTED_BYTE]):
        return None
    try:
        rec = _read_started(io.BytesIO(value))
    except Exception:
        return None  # foreign or corrupt: no evidence rather than a stuck restore
    deaths = {
        d["offset"]: tuple((s["worker"], s["at"]) for s in d["starts"]) for d in rec["deaths"]
    }
    for o in rec["live"]:
        deaths[o] = (*deaths.get(o, ()), (rec["worker"], rec["written_at"]))
    return deaths


def restore_partitions(
    settings: Settings,
    tps: Iterable[LedgerTP],
    ttl_ms: int,
    stop: threading.Event | None = None,
    seeds: dict[LedgerTP, LedgerView] | None = None,
) -> dict[LedgerTP, LedgerView]:
    """Read ledger partitions to their end (read_committed) into views: from the beginning, or
    from where a seed view (one this worker held before) was read to."""
    wanted = list(tps)
    seeds = seeds or {}
    views = {tp: seeds[tp] if tp in seeds else LedgerView() for tp in wanted}
    if not wanted:
        return views
    consumer = Consumer(
        client_config(
            settings.kafka,
            **{
                "group.id": "jobstream-ledger-restore",  # never joins or commits: assign() only
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.max.bytes": 16 * 1024 * 1024,
                # Retention may clean the start away between the watermark query and the
                # fetch: start over from the first entry left, never skip to the end.
                "auto.offset.reset": "earliest",
                # Prefetching outruns the restore loop; past the local queue's limits librdkafka
                # postpones the next fetch by this much (1 s by default), and the loop then
                # sat idle for up to a second of each restore.
                "fetch.queue.backoff.ms": 20,
            },
        )
    )
    marks = LogEnds(settings, "jobstream-ledger-restore")
    try:
        # Read up to the high watermark taken now, not just to the first end-of-partition: with
        # read_committed that end is the last stable offset, which a crashed worker's dangling
        # transaction holds back until it times out, hiding entries committed after it.
        ends: dict[LedgerTP, int] = {}
        assign = []
        for topic, p in wanted:
            low, high = marks.of(topic, p)
            view = views[(topic, p)]
            if view.read_to < low:  # what the seed missed was cleaned away: read it all
                view = views[(topic, p)] = LedgerView()
            # The low watermark, not OFFSET_BEGINNING: resolving that logical offset held the
            # first fetch back by 500 ms (librdkafka 2.x, every restore).
            start = max(view.read_to, low)
            view.read_to = high
            if high > max(low, start):
                ends[(topic, p)] = high
                assign.append(TopicPartition(topic, p, start))
        consumer.assign(assign)
        cutoff = int(time.time() * 1000) - ttl_ms
        while ends and not (stop and stop.is_set()):
            # Added per partition once per batch: add_many's set-up costs more than one entry.
            batch: dict[LedgerTP, list[tuple[str, int]]] = {tp: [] for tp in views}
            # A batch call waits out its timeout unless it fills up, and the last one never
            # does: a short timeout keeps that wait from adding half a second to each restore.
            for msg in consumer.consume(1000, timeout=0.05):
                tp = (msg.topic() or "", msg.partition() or 0)
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(
                            f"ledger restore of {tp[0]}[{tp[1]}] failed: {err.str()}"
                        )
                    continue
                value = msg.value()
                key = msg.key()
                if value is None or key is None:
                    continue
                if value[0] == STARTED_BYTE:  # the latest one per key is the state
                    views[tp].starts[key.decode("utf-8", "replace")] = value
                    continue
                if value[0] == CANCELLED_BYTE:  # not a completion: the job is skipped
                    at, job_id = cancelled_at(value), cancelled_job(key)
                    if at is not None and job_id is not None and at >= cutoff:
                        views[tp].cancelled[job_id] = at
                    continue
                if value[:1] == HEAD_MARK:
                    head = decode_head(value)
                    if head is not None:
                        views[tp].heads[key.decode("utf-8", "replace")] = head
                    continue
                finished = entry_finished_at(value)
                if finished is not None and finished >= cutoff:  # completions, routing marks
                    batch[tp].append((key.decode("utf-8", "replace"), finished))
            for tp, entries in batch.items():
                if entries:
                    views[tp].add_many(entries)
            for tpo in consumer.position([TopicPartition(t, p) for t, p in ends]):
                if tpo.offset >= ends[(tpo.topic, tpo.partition)]:
                    del ends[(tpo.topic, tpo.partition)]
    finally:
        consumer.close()
        marks.close()
    return views


class Ledger:
    """Views of the owned ledger partitions, their background restores and pending entries."""

    def __init__(self, settings: Settings, group: str | None = None) -> None:
        self.settings = settings
        self.tail = LedgerTail(settings, group or settings.worker.group_id)
        self._version = 0  # moves when the views held change (the tail follows them)
        self._followed: tuple[int, int] | None = None
        # At least once there is no transaction to wait for: an entry counts once acknowledged.
        self._count_on_ack = settings.worker.mode is Mode.AT_LEAST_ONCE
        self.ttl_ms = int(settings.worker.ledger_ttl_s * 1000)
        self.views: dict[LedgerTP, LedgerView] = {}
        self.pending: dict[LedgerTP, dict[str, int]] = {}
        self._pending_routed: set[LedgerTP] = set()  # a routing mark was added to pending
        self._users: dict[LedgerTP, int] = {}
        self._restoring: set[LedgerTP] = set()
        self._early: dict[LedgerTP, dict[str, int]] = {}  # committed while restoring
        # Views of partitions given up lately, kept a while: an eager rebalance hands most of
        # them straight back, and catching up from where a view was read to is cheaper than
        # reading the whole partition again.
        self._retired: dict[LedgerTP, tuple[float, LedgerView]] = {}
        self._done: queue.SimpleQueue[
            tuple[list[LedgerTP], dict[LedgerTP, LedgerView] | Exception]
        ] = queue.SimpleQueue()
        self._stop = threading.Event()

    def acquire(self, tps: Iterable[LedgerTP]) -> None:
        """Start using these ledger partitions; restore the ones not held yet."""
        fresh: list[LedgerTP] = []
        seeds: dict[LedgerTP, LedgerView] = {}  # views to catch up instead of reading anew
        self._drop_retired(time.monotonic() - RETAIN_S)
        for tp in tps:
            self._users[tp] = self._users.get(tp, 0) + 1
            if tp in self._restoring or tp in fresh:
                continue
            if self._users[tp] > 1 and tp in self.views:
                # Held through another of our partitions (a retry tier), but this newly assigned
                # partition's completions were written by its previous owner: catch up.
                seeds[tp] = self.views.pop(tp)
                self._version += 1
            elif tp in self._retired:
                seeds[tp] = self._retired.pop(tp)[1]
            if tp not in self.views:
                fresh.append(tp)
        if fresh:
            self._restoring.update(fresh)
            threading.Thread(
                target=self._restore, args=(fresh, seeds), name="js-ledger-restore", daemon=True
            ).start()

    def follow(self, generation: int, sources: Iterable[tuple[LedgerTP, LedgerTP]]) -> None:
        """Have the tail follow the ready views, and fence the source partitions (source,
        ledger partition) whose view is ready; cheap when nothing changed since the last call
        (`generation`: the assignment's)."""
        if self._followed == (generation, self._version):
            return
        self._followed = (generation, self._version)
        views = dict(self.views)
        self.tail.sync(views, {src: ltp for src, ltp in sources if ltp in views})

    def release(self, tp: LedgerTP) -> None:
        self._version += 1
        self._users[tp] = self._users.get(tp, 1) - 1
        if self._users[tp] <= 0:
            self._users.pop(tp, None)
            view = self.views.pop(tp, None)
            if view is not None:
                self._retired[tp] = (time.monotonic(), view)
            self.pending.pop(tp, None)
            self._pending_routed.discard(tp)

    def _drop_retired(self, before: float) -> None:
        for tp in [tp for tp, (at, _) in self._retired.items() if at < before]:
            del self._retired[tp]

    def _restore(
        self, tps: list[LedgerTP], seeds: dict[LedgerTP, LedgerView] | None = None
    ) -> None:
        try:
            views = restore_partitions(self.settings, tps, self.ttl_ms, self._stop, seeds)
            self._done.put((tps, views))
        except Exception as e:  # reported to the poll loop, which retries (from scratch)
            self._done.put((tps, e))

    def collect(self) -> list[Exception]:
        """Adopt finished restores (poll thread); returns restore errors (retried here)."""
        errors: list[Exception] = []
        while not self._done.empty():
            tps, result = self._done.get()
            self._restoring.difference_update(tps)
            if isinstance(result, Exception):
                errors.append(result)
                again = [tp for tp in tps if tp in self._users]
                self._restoring.update(again)
                threading.Timer(1.0, self._restore, args=(again,)).start()
                continue
            for tp, view in result.items():
                early = self._early.pop(tp, {})
                if tp in self._users:
                    view.add_many(early.items())
                    self.views[tp] = view
                    self._version += 1
        return errors

    def ready(self, tp: LedgerTP) -> bool:
        return tp in self.views

    def head(self, tp: LedgerTP, key: str) -> str | None:
        """The chain head a restore read for this key (see HEAD_PREFIX)."""
        view = self.views.get(tp)
        return view.heads.get(key) if view is not None else None

    def is_done(self, tp: LedgerTP, job_id: str) -> bool:
        pending = self.pending.get(tp)
        if pending and job_id in pending:
            return True
        view = self.views.get(tp)
        return view is not None and job_id in view

    def was_routed(self, tp: LedgerTP, topic: str, partition: int, offset: int) -> bool:
        """is_done(tp, routed_key(...)), without the key and the lookup where no routing mark
        was ever added (nearly always: marks are for retries and dead letters only)."""
        view = self.views.get(tp)
        if (view is None or not view.routed) and tp not in self._pending_routed:
            return False
        return self.is_done(tp, routed_key(topic, partition, offset))

    def is_cancelled(self, tp: LedgerTP, job_id: str) -> bool:
        """Whether `jobs cancel` cancelled this job, as far as the view has read (any thread)."""
        view = self.views.get(tp)
        return view is not None and job_id in view.cancelled

    def started(self, tp: LedgerTP, key: str) -> bytes | None:
        """The latest crash evidence restored under this key (see consumers/runtime/crashes.py)."""
        view = self.views.get(tp)
        return None if view is None else view.starts.get(key)

    def add_pending(self, tp: LedgerTP, job_id: str, finished_at_ms: int) -> None:
        self.pending.setdefault(tp, {})[job_id] = finished_at_ms
        if job_id.startswith(ROUTED_PREFIX):
            self._pending_routed.add(tp)

    def committed(self) -> None:
        """The interval's commit succeeded: in a transaction, its pending entries count now (at
        least once, each counted on its acknowledgement and what is pending is in flight)."""
        if self._count_on_ack:
            return
        for tp, entries in self.pending.items():
            self._keep(tp, entries)
        self.pending = {}
        self._pending_routed.clear()

    def acked(self, tp: LedgerTP, job_id: str) -> None:
        """The broker acknowledged this entry: at least once it is durable and counts now; a
        transaction's entries wait for committed()."""
        if not self._count_on_ack:
            return
        finished = self.pending.get(tp, {}).pop(job_id, None)
        if finished is not None:
            self._keep(tp, {job_id: finished})

    def _keep(self, tp: LedgerTP, entries: dict[str, int]) -> None:
        view = self.views.get(tp)
        if view is not None:
            view.add_many(entries.items())
        elif tp in self._restoring:  # the restore may have read past its end before this
            self._early.setdefault(tp, {}).update(entries)

    def aborted(self) -> None:
        self.pending = {}
        self._pending_routed.clear()

    def expire(self) -> None:
        cutoff = int(time.time() * 1000) - self.ttl_ms
        for view in self.views.values():
            view.expire(cutoff)
        self._drop_retired(time.monotonic() - RETAIN_S)

    def entries(self) -> int:
        return sum(len(v) for v in self.views.values())

    def close(self) -> None:
        self._stop.set()
        self.tail.close()
