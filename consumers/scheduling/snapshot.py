"""Snapshots of the pending index, so that a new owner of a T.scheduled partition restores from
the latest snapshot and the records after it, not from the partition's beginning.

Reading records one by one tops out far below what a restore after a rebalance should take
(a Python consumer loop that only counts reaches ~70k records/s on a small machine); a
snapshot is the index's arrays as bytes and loads at memory speed.

- Where: T.scheduled.snapshots, compacted, one partition per T.scheduled partition. A snapshot
  is one transaction of chunks (keys `chunk/<i>`, at most CHUNK_BYTES each), every chunk with a
  `js-snapshot` header: format, snapshot id, i, n, the T.scheduled offset it covers up to
  (`covers`: records below it are in it) and the BLAKE2b digest of the whole dump.
- Why it is correct: the index at `covers` is the fold of the records below it, less entries
  whose dispatch committed (their tombstones are at or after `covers`, and are read again).
  Entries taken out to be read back are put back into the dump's buckets. So any snapshot, even
  one written by an owner that has since lost the partition, is a state the records after it
  bring up to date.
- Why it is safe: anything wrong (missing topic, incomplete or corrupt chunks, a format this
  version does not know, `covers` outside the partition) means no snapshot: the owner restores
  from the beginning, as without snapshots, and says why.
"""

from __future__ import annotations

import hashlib
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings
from jobstream.consumers.scheduling.index import IndexFormatError, PendingIndex

HEADER = "js-snapshot"
FORMAT = 1
CHUNK_BYTES = 900_000  # under the broker's default message.max.bytes (1 MiB)
KEEP_CANDIDATES = 4  # snapshots assembled at once while reading (interleaved writers)


class SnapshotError(Exception):
    """No usable snapshot; the message says why."""


@dataclass(frozen=True)
class Meta:
    snap_id: str
    i: int
    n: int
    covers: int
    digest: str

    def header(self) -> bytes:
        return (f"v={FORMAT};id={self.snap_id};i={self.i};n={self.n};covers={self.covers};"
                f"digest={self.digest}").encode()

    @classmethod
    def parse(cls, raw: bytes | str | None) -> Meta | None:
        """The header's fields; None when it is missing, malformed or of another format."""
        if raw is None:
            return None
        try:
            text = raw.decode() if isinstance(raw, bytes) else raw
            f = dict(kv.split("=", 1) for kv in text.split(";"))
            if f.get("v") != str(FORMAT):
                return None
            meta = cls(f["id"], int(f["i"]), int(f["n"]), int(f["covers"]), f["digest"])
        except (KeyError, ValueError, UnicodeDecodeError):
            return None
        if not (0 <= meta.i < meta.n and meta.covers >= 0):
            return None
        return meta


@dataclass
class _Assembly:
    meta: Meta
    chunks: dict[int, bytes] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.chunks) == self.meta.n


def split(dump: bytes, covers: int) -> list[tuple[bytes, bytes, Meta]]:
    """(key, chunk, meta) records of one snapshot of `dump` covering offsets below `covers`."""
    digest = hashlib.blake2b(dump, digest_size=16).hexdigest()
    n = max(1, -(-len(dump) // CHUNK_BYTES))
    snap_id = uuid.uuid4().hex
    return [
        (f"chunk/{i}".encode(), dump[i * CHUNK_BYTES:(i + 1) * CHUNK_BYTES],
         Meta(snap_id, i, n, covers, digest))
        for i in range(n)
    ]


def pick(records: Iterable[tuple[bytes | None, bytes | None]]) -> tuple[int, bytes] | None:
    """(covers, dump) of the complete snapshot covering the most among `records` ((header,
    value) in offset order), None when there is none. A dump whose digest does not match is
    not complete."""
    best: tuple[int, bytes] | None = None
    open_: dict[str, _Assembly] = {}
    for header, value in records:
        meta = Meta.parse(header)
        if meta is None or value is None:
            continue
        a = open_.get(meta.snap_id)
        if a is None:
            if len(open_) >= KEEP_CANDIDATES:  # the one covering least goes
                del open_[min(open_, key=lambda k: open_[k].meta.covers)]
            a = open_[meta.snap_id] = _Assembly(meta)
        if a.meta.n != meta.n or a.meta.covers != meta.covers or a.meta.digest != meta.digest:
            continue
        a.chunks[meta.i] = value
        if a.complete:
            del open_[meta.snap_id]
            if best is None or a.meta.covers >= best[0]:
                dump = b"".join(a.chunks[i] for i in range(a.meta.n))
                if hashlib.blake2b(dump, digest_size=16).hexdigest() == a.meta.digest:
                    best = (a.meta.covers, dump)
    return best


@dataclass(frozen=True)
class Restored:
    index: PendingIndex
    covers: int
    seconds: float


class Snapshots:
    """Reads and writes one worker's snapshots (the scheduler thread's alone)."""

    def __init__(self, settings: Settings, group: str) -> None:
        self.settings = settings
        self.group = group
        self._consumer: Consumer | None = None

    def _reader(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(client_config(self.settings.kafka, **{
                "group.id": self.group,  # assign only: never joins it or commits
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 50,
            }))
        return self._consumer

    def load(self, topic: str, spans: dict[int, tuple[int, int]],
             timeout_s: float = 30.0) -> dict[int, Restored | SnapshotError]:
        """Per partition of `spans` (partition -> the [low, high) offsets of its T.scheduled
        partition), the latest snapshot that fits, or a SnapshotError saying why there is none
        to use. The partitions are read side by side: a read's cost is mostly round trips."""
        t0 = time.monotonic()
        c = self._reader()
        out: dict[int, Restored | SnapshotError] = {}
        ends: dict[int, int] = {}
        for p in spans:
            try:
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5,
                                                 cached=False)
            except:  # noqa: E722 - seen raised as a bare KafkaError, which is no Exception
                out[p] = SnapshotError(f"cannot read {topic}[{p}]: {sys.exc_info()[1]}")
                continue
            if hi <= lo:
                out[p] = SnapshotError(f"{topic}[{p}] holds no snapshot yet")
            else:
                ends[p] = hi
        records: dict[int, list[tuple[bytes | None, bytes | None]]] = {p: [] for p in ends}
        if ends:
            c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
            try:
                self._read(c, topic, ends, records, out, t0 + timeout_s, timeout_s)
            finally:
                c.unassign()
        for p, recs in records.items():
            if p not in out:
                out[p] = self._restored(topic, p, recs, spans[p], t0)
        return out

    @staticmethod
    def _read(c: Consumer, topic: str, ends: dict[int, int],
              records: dict[int, list[tuple[bytes | None, bytes | None]]],
              out: dict[int, Restored | SnapshotError], deadline: float, timeout_s: float
              ) -> None:
        left = set(ends)
        while left:
            if time.monotonic() > deadline:
                for p in left:
                    out[p] = SnapshotError(f"reading {topic}[{p}] took over {timeout_s:g}s")
                return
            for m in c.consume(100, timeout=0.5):
                p = m.partition() or 0
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        left.discard(p)
                    elif p in left:
                        out[p] = SnapshotError(f"cannot read {topic}[{p}]: {err.str()}")
                        left.discard(p)
                    continue
                if p not in left:
                    continue
                raw: Any = m.headers() or []  # a list of pairs from the consumer
                header = next((v for k, v in raw if k == HEADER), None)
                records[p].append((header, m.value()))
                if (m.offset() or 0) >= ends[p] - 1:
                    left.discard(p)

    @staticmethod
    def _restored(topic: str, p: int, records: list[tuple[bytes | None, bytes | None]],
                  span: tuple[int, int], t0: float) -> Restored | SnapshotError:
        found = pick(records)
        if found is None:
            return SnapshotError(f"no complete snapshot in {topic}[{p}]")
        covers, dump = found
        low, high = span
        if not low <= covers <= high:
            return SnapshotError(f"the snapshot covers up to offset {covers}, outside the "
                                 f"partition's offsets {low}-{high}")
        try:
            index = PendingIndex.from_bytes(dump)
        except IndexFormatError as e:
            return SnapshotError(f"the snapshot is not readable: {e}")
        return Restored(index, covers, time.monotonic() - t0)

    @staticmethod
    def write(producer: Producer, topic: str, partition: int, dump: bytes, covers: int,
              timeout_s: float = 30.0) -> int:
        """One snapshot in one transaction of `producer` (transactional, none open); the
        number of chunks. Raises KafkaException, the transaction aborted."""
        records = split(dump, covers)
        producer.begin_transaction()
        try:
            for key, chunk, meta in records:
                producer.produce(topic, chunk, key, partition=partition,
                                 headers=[(HEADER, meta.header())])
            producer.commit_transaction(timeout_s)
        except BaseException:
            producer.abort_transaction(timeout_s)
            raise
        return len(records)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
