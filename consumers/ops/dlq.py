"""Dead letters as data: a T.dlq record, the filters that pick records, parsing of times and
positions, and what an operation did. No I/O: reading a T.dlq is consumers/dlq_reader.py;
replay and export build on both (consumers/replay.py, consumers/dlq_export.py) and
consumers/dlq_cli.py does the printing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Message

from jobstream.config.durations import parse_duration
from jobstream.consumers.runtime.types import Category
from jobstream.schemas import wire
from jobstream.schemas.masking import json_safe
from jobstream.schemas.registry import DecodeError, SchemaRegistry, UnknownJobType


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
    try:
        if rel:  # a unit is required, so "20240501" stays a date
            return now - timedelta(seconds=parse_duration(rel.group(1), allow_zero=True))
        dt = datetime.fromisoformat(s)
        dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
        dt.astimezone(UTC)  # in range in UTC too, or comparing it fails later
        return dt
    except OverflowError:
        raise DlqError(f"invalid time {text!r}: outside the years 1 to 9999") from None
    except ValueError:
        raise DlqError(
            f"invalid time {text!r}: use ISO 8601 (2024-05-01T12:00:00Z) or an age like -1h, 30m"
        ) from None


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
    since_text: str | None = field(default=None, compare=False)  # as typed, for progress_key

    def __post_init__(self) -> None:
        if self.category is not None and self.category not in CATEGORIES:
            raise DlqError(f"unknown category {self.category!r} "
                           f"(use one of {', '.join(CATEGORIES)})")
        if self.job_id == "":  # no job has an empty id: it would match nothing, silently
            raise DlqError("the job id filter is empty (--job-id ''): give a job id")
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

    def after_until(self, dl: DeadLetter) -> bool:
        """Left out only for failing at or after --until: a later run (a later until, none)
        may want it, so replay never moves saved progress past it."""
        when = dl.when_ms
        return self.until is not None and when is not None and when >= to_ms(self.until)

    def progress_key(self) -> str | None:
        """What a replay's saved progress is kept per; None (no such filters) shares the
        progress of unfiltered runs. These filters decide the same way on every run, so
        progress may pass what they left out: class, category, key, job id and since as typed
        (a relative since only moves later: what it left out stays out). until is not part of
        it (see after_until) and neither is limit (a limited run stops after its last record)."""
        parts: dict[str, str] = {n: v for n in ("error_class", "category", "key", "job_id")
                                 if (v := getattr(self, n)) is not None}
        if self.since is not None:
            rel = _RELATIVE.match((self.since_text or "").strip().lower())
            parts["since"] = (f"-{parse_duration(rel.group(1), allow_zero=True):g}s" if rel
                              else str(iso(to_ms(self.since))))
        return json.dumps(parts, sort_keys=True) if parts else None

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


# -- what an operation did -------------------------------------------------------------------------


@dataclass
class Result:
    """What a replay, export or unmasked show did; `covered` is first/last DLQ offset read per
    partition. replayed counts records the broker acknowledged; too_large the references of
    records skipped because their destination topic would refuse them."""

    command: str
    source: str
    destination: str
    dry_run: bool = False
    matched: int = 0
    replayed: int = 0
    skipped: int = 0
    exported: int = 0  # records in the written file: 0 when it was discarded
    too_large: list[str] = field(default_factory=list)
    covered: dict[int, tuple[int, int]] = field(default_factory=dict)
    resumed_from: dict[int, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        if self.command == "export":
            return {"matched": self.matched, "exported": self.exported}
        if self.command == "show":
            return {"shown": self.matched}
        return {"matched": self.matched, "replayed": self.replayed, "skipped": self.skipped,
                "too_large": len(self.too_large)}
