"""Reading dead-letter topics: resolve a target, read a T.dlq within bounds, pick records.

Reading assigns partitions directly (no group membership, no commits) and stops at the end
offsets taken when it starts, so it is bounded even while workers keep adding dead letters.
Only replay commits offsets, in its own progress group, and only after the replayed records
are acknowledged.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings
from jobstream.config.topics import DLQ_SUFFIX, base_of, dlq_topic, main_topic
from jobstream.consumers.ops.dlq import DeadLetter, DlqError, Filters
from jobstream.schemas.registry import SchemaRegistry

METADATA_TIMEOUT_S = 6.0  # short: an unreachable broker must fail fast, not hang the CLI
ELECTION_WAIT_S = 5.0  # a partition without a leader gets one this soon, or is reported
STALL_TIMEOUT_S = 30.0  # no record and no end-of-partition for this long: the broker is gone

# librdkafka logs every failed connection attempt; the CLI reports one clear error instead.
QUIET = logging.getLogger("jobstream.kafka.quiet")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False

# (offsets covered, offsets to cover): offsets, not records, since transaction markers take
# offsets too; the count reaches the total when reading ends.
ProgressCb = Callable[[int, int], None]


def unreachable(settings: Settings) -> DlqError:
    return DlqError(f"broker unreachable at {settings.kafka.bootstrap_servers} "
                    f"(no metadata within {METADATA_TIMEOUT_S:g}s)")


def list_topics(settings: Settings) -> dict[str, int]:
    """Topic name -> partition count; DlqError naming the address when no broker answers."""
    admin = AdminClient(client_config(settings.kafka, logger=QUIET))
    try:
        md = admin.list_topics(timeout=METADATA_TIMEOUT_S)
    except KafkaException:
        raise unreachable(settings) from None
    return {name: len(t.partitions) for name, t in md.topics.items()}


@dataclass(frozen=True)
class Target:
    dlq: str
    main: str
    partitions: int


def resolve_target(settings: Settings, target: str,
                   topics: dict[str, int] | None = None) -> Target:
    """A job type (its DLQ topic from the settings) or a topic name ending in .dlq."""
    topics = list_topics(settings) if topics is None else topics
    if target.endswith(DLQ_SUFFIX):
        name = target
    else:
        known = set(settings.jobs) | set(SchemaRegistry.from_dirs(settings.schema_dirs).job_types())
        if target in known:
            name = dlq_topic(main_topic(target, settings.jobs.get(target)))
            if name not in topics:
                raise DlqError(f"job type {target}: its dead-letter topic {name} does not exist "
                               "(create it with `jobstream topics apply`)")
        elif target in topics:
            raise DlqError(f"topic {target} is not a dead-letter topic (those end in "
                           f"{DLQ_SUFFIX}); did you mean {dlq_topic(base_of(target))}?")
        else:
            raise DlqError(f"unknown job type or topic {target!r} "
                           f"(a DLQ topic name ends in {DLQ_SUFFIX})")
    if name not in topics:
        raise DlqError(f"topic {name} does not exist")
    return Target(name, base_of(name), topics[name])


def consumer(settings: Settings, group: str = "jobstream-dlq-reader") -> Consumer:
    """An assign-only consumer: the group id only names replay progress, nothing auto-commits."""
    return Consumer(client_config(settings.kafka, logger=QUIET, **{
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",  # never show records of aborted transactions
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    }))


class Reader:
    """Bounded reads of one topic: every partition from a start offset to an end offset."""

    def __init__(self, settings: Settings, topic: str, group: str = "jobstream-dlq-reader") -> None:
        self.settings, self.topic = settings, topic
        self.consumer = consumer(settings, group)
        self.covered: dict[int, tuple[int, int]] = {}  # partition -> first, last offset read

    def bounds(self) -> dict[int, tuple[int, int]]:
        """partition -> (low, high) watermarks, taken now."""
        try:
            deadline = time.monotonic() + ELECTION_WAIT_S
            while True:
                md = self.consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S)
                tmd = md.topics.get(self.topic)
                electing = tmd is not None and (
                    (tmd.error is not None
                     and tmd.error.code() == KafkaError.LEADER_NOT_AVAILABLE)
                    or any(p.leader < 0 for p in tmd.partitions.values()))
                if not electing or time.monotonic() > deadline:
                    break
                time.sleep(0.1)  # a topic just created, or a leader moving: not a missing topic
            if electing:
                raise DlqError(f"topic {self.topic} has partitions without a leader after "
                               f"{ELECTION_WAIT_S:g}s (is a broker down?)")
            if tmd is None or tmd.error is not None or not tmd.partitions:
                raise DlqError(f"topic {self.topic} does not exist")
            return {p: self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=METADATA_TIMEOUT_S, cached=False)
                for p in sorted(tmd.partitions)}
        except KafkaException:
            raise unreachable(self.settings) from None

    def read(self, starts: dict[int, int], ends: dict[int, int],
             progress: ProgressCb | None = None) -> Iterator[DeadLetter]:
        """Records with start <= offset < end per partition. Done per partition when the record
        at end-1 arrives, a later one does, or end-of-partition is reported (transaction markers
        can sit at end-1), so an empty or idle topic ends at once instead of timing out."""
        pending = {p for p, end in ends.items() if starts.get(p, 0) < end}
        total = sum(max(0, ends[p] - starts.get(p, 0)) for p in pending)
        covered = dict.fromkeys(pending, 0)  # partition -> offsets covered so far

        def advance(p: int, upto: int) -> None:  # offsets below upto are covered
            n = min(upto, ends[p]) - starts.get(p, 0)
            if progress and n > covered[p]:
                covered[p] = n
                progress(sum(covered.values()), total)

        if not pending:
            return
        self.consumer.assign([TopicPartition(self.topic, p, starts.get(p, 0)) for p in pending])
        last = time.monotonic()
        while pending:
            msg = self.consumer.poll(0.5)
            if msg is None:
                if time.monotonic() - last > STALL_TIMEOUT_S:
                    raise DlqError(f"reading {self.topic}: no progress for {STALL_TIMEOUT_S:g}s "
                                   f"(broker {self.settings.kafka.bootstrap_servers})")
                continue
            last = time.monotonic()
            p, err = msg.partition() or 0, msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    if p in pending:
                        advance(p, ends[p])
                    self._done(pending, p)
                    continue
                raise DlqError(f"reading {self.topic} partition {p}: {err.str()}")
            offset = msg.offset() or 0
            if p not in pending:
                continue
            if offset >= ends[p]:
                advance(p, ends[p])
                self._done(pending, p)
                continue
            if offset >= ends[p] - 1:
                self._done(pending, p)
            first = self.covered.get(p, (offset, offset))[0]
            self.covered[p] = (first, offset)
            advance(p, offset + 1)
            yield DeadLetter.from_message(msg)

    def _done(self, pending: set[int], p: int) -> None:
        if p in pending:
            pending.discard(p)
            self.consumer.pause([TopicPartition(self.topic, p)])  # stop fetching past the end

    def close(self) -> None:
        self.consumer.close()


def _order(dl: DeadLetter) -> tuple[bool, int, int, int]:
    """By failure time across partitions (undated records last), then position."""
    return dl.when_ms is None, dl.when_ms or 0, dl.partition, dl.offset


@dataclass
class Selection:
    rows: list[DeadLetter]  # the first `limit` matching records by failure time, oldest first
    matched: int = 0  # every matching record, shown or not
    by_class: Counter[str] = field(default_factory=Counter)  # the same, by error class


def select(settings: Settings, topic: str, filters: Filters | None = None,
           progress: ProgressCb | None = None, reader: Reader | None = None) -> Selection:
    """Read the whole topic (to the end offsets taken now) and keep the oldest `limit`
    matching records by failure time, counting every match."""
    filters = filters or Filters()
    sel = Selection([])

    def counted() -> Iterator[DeadLetter]:
        for dl in _matching(settings, topic, filters, progress, reader):
            sel.matched += 1
            sel.by_class[dl.error_class or "<none>"] += 1
            yield dl

    if filters.limit is None:
        sel.rows = sorted(counted(), key=_order)
    else:
        sel.rows = heapq.nsmallest(filters.limit, counted(), key=_order)
    return sel


def scan(settings: Settings, topic: str, filters: Filters | None = None,
         progress: ProgressCb | None = None, reader: Reader | None = None) -> Iterator[DeadLetter]:
    """Matching dead letters up to the end offsets taken now, in the order read; with a limit,
    the oldest `limit` by failure time (as `select`, so after reading to the end)."""
    filters = filters or Filters()
    if filters.limit is not None:
        yield from select(settings, topic, filters, progress, reader).rows
    else:
        yield from _matching(settings, topic, filters, progress, reader)


def _matching(settings: Settings, topic: str, filters: Filters, progress: ProgressCb | None,
              reader: Reader | None) -> Iterator[DeadLetter]:
    r = reader or Reader(settings, topic)
    try:
        bounds = r.bounds()
        ends = {p: hi for p, (_, hi) in bounds.items()}
        for dl in r.read({p: lo for p, (lo, _) in bounds.items()}, ends, progress):
            if filters.matches(dl):
                yield dl
    finally:
        if reader is None:
            r.close()


def read_one(settings: Settings, topic: str, partition: int, offset: int) -> DeadLetter:
    r = Reader(settings, topic)
    try:
        bounds = r.bounds()
        if partition not in bounds:
            raise DlqError(f"{topic} has no partition {partition} (it has {len(bounds)})")
        lo, hi = bounds[partition]
        where = f"no record at {topic} {partition}:{offset}"
        if not lo <= offset < hi:
            held = f"holds offsets {lo}..{hi - 1}" if hi > lo else "is empty"
            raise DlqError(f"{where} (partition {partition} {held})")
        for dl in r.read({partition: offset}, {partition: hi}):
            if dl.offset == offset:
                return dl
            break
        raise DlqError(f"{where} (a transaction marker or a deleted record)")
    finally:
        r.close()

