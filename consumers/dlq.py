"""Dead-letter topics: resolve a target, read a T.dlq within bounds, filter its records.
(Replay and export, which build on this, are in consumers/replay.py.)

Logic and Kafka I/O only; consumers/dlq_cli.py does the printing. Reading assigns partitions
directly (no group membership, no commits) and stops at the end offsets taken when it starts,
so it is bounded even while workers keep adding dead letters. Only replay commits offsets, in
its own progress group, and only after the replayed records are acknowledged.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from config.durations import parse_duration
from config.kafka import client_config
from config.settings import Settings
from config.topics import DLQ_SUFFIX, base_of, dlq_topic, main_topic
from consumers.retry import Category
from schemas import wire
from schemas.masking import json_safe
from schemas.registry import DecodeError, SchemaRegistry, UnknownJobType

METADATA_TIMEOUT_S = 6.0  # short: an unreachable broker must fail fast, not hang the CLI
STALL_TIMEOUT_S = 30.0  # no record and no end-of-partition for this long: the broker is gone

# librdkafka logs every failed connection attempt; the CLI reports one clear error instead.
QUIET = logging.getLogger("jobstream.kafka.quiet")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False

ProgressCb = Callable[[int, int], None]  # (records scanned, records to scan)


class DlqError(ValueError):
    """A dead-letter operation cannot proceed; the message says why and names the object."""


# -- parsing (pure) ----------------------------------------------------------------------------

_RELATIVE = re.compile(r"^-?\s*(\d+(?:\.\d+)?\s*(?:ms|s|m|h|d))$")


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (naive means UTC) or an age before now: "-1h", "30m", "2d"."""
    s = text.strip()
    now = now or datetime.now(UTC)
    if s.lower() == "now":
        return now
    rel = _RELATIVE.match(s.lower())
    if rel:  # a unit is required, so "20240501" stays a date
        return now - timedelta(seconds=parse_duration(rel.group(1), allow_zero=True))
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise DlqError(
            f"invalid time {text!r}: use ISO 8601 (2024-05-01T12:00:00Z) or an age like -1h, 30m"
        ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse_position(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if not m:
        raise DlqError(f"expected PARTITION:OFFSET, e.g. 3:1042, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def to_ms(t: datetime | int) -> int:
    return t if isinstance(t, int) else int(t.timestamp() * 1000)


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


# -- records and filters -----------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    timestamp: int | None  # record timestamp, ms
    key: bytes | None
    value: bytes | None
    raw_headers: tuple[tuple[str, bytes], ...]  # as read, so replay copies bytes unchanged
    headers: dict[str, str]
    job_type: str | None = None
    job_id: str | None = None
    schema_version: int | None = None
    category: str | None = None
    error_class: str | None = None
    message: str | None = None
    stack: str | None = None
    attempt: int | None = None
    first_failed_at: int | None = None
    failed_at: int | None = None
    origin_topic: str | None = None
    origin_partition: int | None = None
    origin_offset: int | None = None

    @classmethod
    def build(cls, topic: str, partition: int, offset: int, timestamp: int | None,
              key: bytes | None, value: bytes | None,
              raw_headers: list[tuple[str, bytes]] | None) -> DeadLetter:
        raw = tuple((k, v if v is not None else b"") for k, v in raw_headers or ())
        h = wire.decode_headers(raw)
        return cls(
            topic, partition, offset, timestamp, key, value, raw, h,
            job_type=h.get(wire.JOB_TYPE), job_id=h.get(wire.JOB_ID),
            schema_version=_int(h.get(wire.SCHEMA_VERSION)), category=h.get(wire.ERROR_CATEGORY),
            error_class=h.get(wire.ERROR_CLASS), message=h.get(wire.ERROR_MESSAGE),
            stack=h.get(wire.ERROR_STACK), attempt=_int(h.get(wire.ATTEMPT)),
            first_failed_at=_int(h.get(wire.FIRST_FAILED_AT)),
            failed_at=_int(h.get(wire.FAILED_AT)), origin_topic=h.get(wire.ORIGIN_TOPIC),
            origin_partition=_int(h.get(wire.ORIGIN_PARTITION)),
            origin_offset=_int(h.get(wire.ORIGIN_OFFSET)),
        )

    @classmethod
    def from_message(cls, msg: Message) -> DeadLetter:
        ts_type, ts = msg.timestamp()
        given = msg.headers() or []
        pairs = list(given.items()) if isinstance(given, dict) else list(given)
        raw = [(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs]
        key, value = msg.key(), msg.value()
        return cls.build(msg.topic() or "", msg.partition() or 0, msg.offset() or 0,
                         ts if ts_type else None, key if isinstance(key, bytes) else None,
                         value if isinstance(value, bytes) else None, raw)

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def ref(self) -> str:
        """What js-replayed-from carries: <dlq topic>:<partition>:<offset>."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def key_text(self) -> str | None:
        return None if self.key is None else self.key.decode("utf-8", "replace")

    @property
    def when_ms(self) -> int | None:
        """When it died: js-failed-at, else the record timestamp (headerless records)."""
        return self.failed_at if self.failed_at is not None else self.timestamp

    def decode(self, registry: SchemaRegistry, unmask: bool = False) -> dict[str, Any]:
        """The payload in the newest schema version; PII masked unless unmask. Raises DlqError."""
        if not self.job_type:
            raise DlqError(f"no {wire.JOB_TYPE} header")
        if self.schema_version is None:
            raise DlqError(f"no valid {wire.SCHEMA_VERSION} header")
        if self.value is None:
            raise DlqError("no value")
        try:
            payload = registry.decode(self.job_type, self.schema_version, self.value)
        except (DecodeError, UnknownJobType) as e:
            raise DlqError(str(e)) from None
        return payload if unmask else registry.mask(self.job_type, payload)

    def payload(self, registry: SchemaRegistry, unmask: bool = False) -> dict[str, Any] | str:
        """The decoded payload as JSON-safe data (bytes as base64: schemas/masking.py), or
        "<undecodable: reason>" (bad bytes must not crash a listing)."""
        try:
            return dict(json_safe(self.decode(registry, unmask)))
        except DlqError as e:
            return f"<undecodable: {e}>"

    def hex_preview(self, limit: int = 64) -> str:
        v = self.value or b""
        return v[:limit].hex(" ") + (f" ... ({len(v)} bytes)" if len(v) > limit else "")

    def summary(self) -> dict[str, Any]:
        """The list view as JSON-friendly data (no payload: listing never needs the schema)."""
        return {
            "topic": self.topic, "partition": self.partition, "offset": self.offset,
            "timestamp": iso(self.timestamp), "key": self.key_text, "job_id": self.job_id,
            "job_type": self.job_type, "category": self.category, "error_class": self.error_class,
            "message": self.message, "attempt": self.attempt,
            "first_failed_at": iso(self.first_failed_at), "failed_at": iso(self.failed_at),
            "origin": None if self.origin_topic is None else
            f"{self.origin_topic}:{self.origin_partition}:{self.origin_offset}",
        }


CATEGORIES = tuple(c.value for c in Category)


@dataclass(frozen=True)
class Filters:
    """Which dead letters an operation covers. Time bounds apply to js-failed-at (the record
    timestamp when absent): since <= t < until. error_class matches the full name or its last
    dotted part ("EmailBounced" matches "myapp.jobs.EmailBounced")."""

    since: datetime | int | None = None
    until: datetime | int | None = None
    error_class: str | None = None
    category: str | None = None
    key: str | None = None
    job_id: str | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.category is not None and self.category not in CATEGORIES:
            raise DlqError(f"unknown category {self.category!r} "
                           f"(use one of {', '.join(CATEGORIES)})")
        if self.limit is not None and self.limit < 1:
            raise DlqError(f"limit must be at least 1, got {self.limit}")

    def matches(self, dl: DeadLetter) -> bool:
        when = dl.when_ms
        if self.since is not None and (when is None or when < to_ms(self.since)):
            return False
        if self.until is not None and (when is None or when >= to_ms(self.until)):
            return False
        if self.error_class is not None:
            ec = dl.error_class or ""
            if self.error_class not in (ec, ec.rsplit(".", 1)[-1]):
                return False
        if self.category is not None and dl.category != self.category:
            return False
        if self.key is not None and dl.key_text != self.key:
            return False
        return self.job_id is None or dl.job_id == self.job_id

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for name in ("since", "until"):
            v = getattr(self, name)
            if v is not None:
                d[name] = iso(to_ms(v))
        for name in ("error_class", "category", "key", "job_id", "limit"):
            if getattr(self, name) is not None:
                d[name] = getattr(self, name)
        return d


# -- Kafka: targets and reading ----------------------------------------------------------------


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
            md = self.consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S)
            tmd = md.topics.get(self.topic)
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
        scanned = 0
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
                    self._done(pending, p)
                    continue
                raise DlqError(f"reading {self.topic} partition {p}: {err.str()}")
            offset = msg.offset() or 0
            if p not in pending:
                continue
            if offset >= ends[p]:
                self._done(pending, p)
                continue
            if offset >= ends[p] - 1:
                self._done(pending, p)
            first = self.covered.get(p, (offset, offset))[0]
            self.covered[p] = (first, offset)
            scanned += 1
            if progress:
                progress(scanned, total)
            yield DeadLetter.from_message(msg)

    def _done(self, pending: set[int], p: int) -> None:
        if p in pending:
            pending.discard(p)
            self.consumer.pause([TopicPartition(self.topic, p)])  # stop fetching past the end

    def close(self) -> None:
        self.consumer.close()


def scan(settings: Settings, topic: str, filters: Filters | None = None,
         end_offsets: dict[int, int] | None = None,
         progress: ProgressCb | None = None, reader: Reader | None = None) -> Iterator[DeadLetter]:
    """Matching dead letters from the beginning up to the end offsets (default: taken now)."""
    filters = filters or Filters()
    r = reader or Reader(settings, topic)
    try:
        bounds = r.bounds()
        ends = end_offsets if end_offsets is not None else {p: hi for p, (_, hi) in bounds.items()}
        n = 0
        for dl in r.read({p: lo for p, (lo, _) in bounds.items()}, ends, progress):
            if filters.matches(dl):
                yield dl
                n += 1
                if filters.limit is not None and n >= filters.limit:
                    return
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


# -- what an operation did -------------------------------------------------------------------------


@dataclass
class Result:
    """What a replay or export did; `covered` is first/last DLQ offset read per partition."""

    command: str
    source: str
    destination: str
    dry_run: bool = False
    matched: int = 0
    replayed: int = 0
    skipped: int = 0
    covered: dict[int, tuple[int, int]] = field(default_factory=dict)
    resumed_from: dict[int, int] = field(default_factory=dict)
