"""The pending index of one T.scheduled partition: which delayed jobs are due when, in about
30-40 bytes per pending job (payloads stay in Kafka; the scheduler reads a job's record back by
its offset shortly before it is due).

Two parts, both in flat typed arrays rather than Python objects (a tuple in a heap costs ~100
bytes per job):

- a hash table job id -> offset of its latest T.scheduled record (open addressing on a 64-bit
  hash of the id, in two `array('q')`, kept 50-75 % full): a newer record for the id (a
  reschedule) replaces the offset, a tombstone (dispatched or cancelled) removes it. An entry is
  current only while the table still names its offset, so replaced and cancelled entries are
  skipped when their old due time comes.
- one bucket per WINDOW_MS of due times: the offsets (`array('q')`) and the milliseconds within
  the window (`array('H')`) of the entries due then, with a heap of the windows. A bucket is
  sorted by due time when entries are taken from it, and taken from in part. (Buckets of one
  second cost more than their entries when jobs are spread thin: 101 bytes per job measured for
  100,000 jobs due over an hour.)

Two job ids with the same 64-bit hash in one partition would count as one (the older would be
taken as replaced): about one chance in 10^7 with a million pending jobs in a partition. The
hash is BLAKE2b's, not Python's own (salted per process): a snapshot of the index
(consumers/scheduling/snapshot.py) is read by another process.

`to_bytes` / `from_bytes` dump and load the arrays as they are, so a snapshot loads at memory
speed rather than one insert per entry.
"""

from __future__ import annotations

import hashlib
import heapq
import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field

_EMPTY = 0
_DELETED = 1
_MIN_CAPACITY = 1024
_MAX_LOAD = 0.75  # slots used (live + deleted) past which the table is rebuilt
_GROWN_LOAD = 0.5  # live entries per slot after a rebuild that grows it
WINDOW_MS = 64_000  # due times per bucket; the millis within one fit in 16 bits


_blake2b = hashlib.blake2b


def key_hash(job_id: bytes) -> int:
    """A 63-bit hash of a job id, never 0 or 1 (the table's empty and deleted marks), the same
    in every process (snapshots carry the table)."""
    h = int.from_bytes(_blake2b(job_id, digest_size=8).digest(), "little") >> 1
    return h if h > _DELETED else h + 2


class IndexFormatError(ValueError):
    """Bytes that are not a dump of a PendingIndex (cut, corrupt or another format)."""


_MAGIC = b"JSPI"
_FORMAT = 2  # 1: one bucket per second
# magic, format, capacity, used, live, buckets, entries in buckets
_HEAD = struct.Struct("<4sHqqqqq")


def _le(a: array) -> array:  # type: ignore[type-arg]
    """`a` in little-endian order (dumps are the same on every machine)."""
    if sys.byteorder != "little":
        a = array(a.typecode, a)
        a.byteswap()
    return a


@dataclass(slots=True)
class _Bucket:
    offsets: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]
    millis: array = field(default_factory=lambda: array("H"))  # type: ignore[type-arg]
    ordered: bool = True  # millis ascending

    def sort(self) -> None:
        if not self.ordered:
            millis, offsets = self.millis, self.offsets
            order = sorted(range(len(millis)), key=millis.__getitem__)
            self.millis = array("H", [millis[i] for i in order])
            self.offsets = array("q", [offsets[i] for i in order])
            self.ordered = True


class PendingIndex:
    """Pending delayed jobs of one partition. Not thread-safe: the scheduler's thread owns it."""

    def __init__(self) -> None:
        self._cap = _MIN_CAPACITY
        self._keys = array("q", [0]) * self._cap
        self._vals = array("q", [0]) * self._cap
        self._used = 0  # live + deleted slots (what probing walks through)
        self._live = 0
        self._buckets: dict[int, _Bucket] = {}
        self._windows: list[int] = []  # heap of the buckets' windows (due_ms // WINDOW_MS)

    def __len__(self) -> int:
        """Pending jobs (current entries)."""
        return self._live

    # -- the id table ------------------------------------------------------------------------

    def _find(self, h: int) -> tuple[int, bool]:
        """(slot, found): the slot holding h, or the slot to put it in."""
        keys, cap = self._keys, self._cap
        i = h % cap
        free = -1
        while True:
            k = keys[i]
            if k == h:
                return i, True
            if k == _EMPTY:
                return (free if free >= 0 else i), False
            if k == _DELETED and free < 0:
                free = i
            i += 1
            if i == cap:
                i = 0

    def _grow(self) -> None:
        old_keys, old_vals = self._keys, self._vals
        # Grows only when live entries fill it; deleted slots alone are swept at the same size.
        if self._live > self._cap * _GROWN_LOAD:
            self._cap = int(self._live / _GROWN_LOAD) + 1
        self._keys = array("q", [0]) * self._cap
        self._vals = array("q", [0]) * self._cap
        self._used = self._live = 0
        for k, v in zip(old_keys, old_vals, strict=True):
            if k > _DELETED:
                i, _ = self._find(k)
                self._keys[i], self._vals[i] = k, v
                self._used += 1
                self._live += 1

    def current(self, h: int) -> int | None:
        """Offset of the latest record of the job id with hash h, None when there is none."""
        i, found = self._find(h)
        return self._vals[i] if found else None

    def add(self, h: int, offset: int, due_ms: int) -> None:
        """A T.scheduled record at `offset` for the job id with hash h, due at due_ms: it
        replaces any earlier entry of the id."""
        i, found = self._find(h)
        if not found:
            if self._keys[i] == _EMPTY:
                self._used += 1
            self._live += 1
            self._keys[i] = h
        self._vals[i] = offset
        self.requeue(offset, due_ms)
        if self._used > self._cap * _MAX_LOAD:
            self._grow()

    def remove(self, h: int, offset: int | None = None) -> bool:
        """Drop the id's entry (a tombstone), or only if it is still the one at `offset`."""
        i, found = self._find(h)
        if not found or (offset is not None and self._vals[i] != offset):
            return False
        self._keys[i] = _DELETED
        self._live -= 1
        return True

    # -- due times ---------------------------------------------------------------------------

    def requeue(self, offset: int, due_ms: int) -> None:
        """Put an entry's due time back (a dispatch that did not commit) without touching the
        table."""
        win, ms = divmod(max(0, due_ms), WINDOW_MS)
        b = self._buckets.get(win)
        if b is None:
            b = self._buckets[win] = _Bucket()
            heapq.heappush(self._windows, win)
        millis = b.millis  # _Bucket.append inline: this is most of an add
        if b.ordered and millis and ms < millis[-1]:
            b.ordered = False
        b.offsets.append(offset)
        millis.append(ms)

    def next_due_ms(self) -> int | None:
        """The earliest due time held (possibly of a replaced entry), None when empty."""
        if not self._windows:
            return None
        win = self._windows[0]
        b = self._buckets[win]
        return win * WINDOW_MS + int(b.millis[0] if b.ordered else min(b.millis))

    def take_until(self, until_ms: int) -> list[tuple[int, int]]:
        """Remove and return (due_ms, offset) of the entries whose due second starts at or
        before until_ms (up to a second past it), current or not (the caller checks `current`
        when it has the record's key), in due order."""
        limit = (until_ms // 1000 + 1) * 1000
        out: list[tuple[int, int]] = []
        while self._windows and self._windows[0] * WINDOW_MS < limit:
            win = self._windows[0]
            b, base = self._buckets[win], win * WINDOW_MS
            if base + WINDOW_MS <= limit:
                k = len(b.millis)  # the whole window
            else:
                b.sort()
                k = bisect_left(b.millis, limit - base)
            out.extend((base + ms, off) for ms, off in zip(b.millis[:k], b.offsets[:k],
                                                           strict=True))
            if k < len(b.millis):
                del b.millis[:k], b.offsets[:k]
                break
            heapq.heappop(self._windows)
            del self._buckets[win]
        out.sort()
        return out

    # -- dump and load -----------------------------------------------------------------------

    def to_bytes(self, extra: Iterable[tuple[int, int]] = ()) -> bytes:
        """The index as bytes; `extra` (due_ms, offset) entries are put in its buckets in the
        dump only (entries taken out to be read back, not yet dispatched, must be due again
        for whoever loads it)."""
        buckets = {win: (b.offsets, b.millis) for win, b in self._buckets.items()}
        copied: set[int] = set()
        for due_ms, offset in extra:
            win, ms = divmod(max(0, due_ms), WINDOW_MS)
            offs, millis = buckets.get(win) or (array("q"), array("H"))
            if win not in copied:  # never append to the live ones
                offs, millis = array("q", offs), array("H", millis)
                copied.add(win)
                buckets[win] = (offs, millis)
            offs.append(offset)
            millis.append(ms)
        wins = array("q", sorted(buckets))
        counts = array("q", (len(buckets[s][0]) for s in wins))
        offsets, millis = array("q"), array("H")
        for win in wins:
            offsets.extend(buckets[win][0])
            millis.extend(buckets[win][1])
        head = _HEAD.pack(_MAGIC, _FORMAT, self._cap, self._used, self._live, len(wins),
                          len(offsets))
        parts = (self._keys, self._vals, wins, counts, offsets, millis)
        return head + b"".join(_le(a).tobytes() for a in parts)

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> PendingIndex:
        """An index from `to_bytes`; IndexFormatError when the bytes are not one."""
        view = memoryview(data)
        if len(view) < _HEAD.size:
            raise IndexFormatError(f"{len(view)} bytes is shorter than the header")
        magic, fmt, cap, used, live, nwins, nentries = _HEAD.unpack_from(view)
        if magic != _MAGIC or fmt != _FORMAT:
            raise IndexFormatError(f"not a pending index dump of format {_FORMAT}")
        if not (cap >= _MIN_CAPACITY and 0 <= live <= used <= cap and nwins >= 0
                and nentries >= 0):
            raise IndexFormatError("inconsistent sizes in the header")
        sizes = [("q", cap), ("q", cap), ("q", nwins), ("q", nwins), ("q", nentries),
                 ("H", nentries)]
        want = _HEAD.size + sum(array(t).itemsize * n for t, n in sizes)
        if len(view) != want:
            raise IndexFormatError(f"{len(view)} bytes, the header says {want}")
        arrays, at = [], _HEAD.size
        for typecode, n in sizes:
            a = array(typecode)
            end = at + a.itemsize * n
            a.frombytes(view[at:end])
            arrays.append(_le(a))
            at = end
        keys, vals, wins, counts, offsets, millis = arrays
        if sum(counts) != nentries or any(c < 0 for c in counts):
            raise IndexFormatError("bucket sizes do not add up")
        idx = cls()
        idx._cap, idx._used, idx._live = cap, used, live
        idx._keys, idx._vals = keys, vals
        at = 0
        for win, n in zip(wins, counts, strict=True):
            idx._buckets[win] = _Bucket(offsets[at:at + n], millis[at:at + n], ordered=False)
            at += n
        idx._windows = list(wins)  # sorted: already a heap
        return idx

    def nbytes(self) -> int:
        """Memory held by the index's arrays and buckets (what `bytes per pending job` is)."""
        import sys

        size = sys.getsizeof(self._keys) + sys.getsizeof(self._vals)
        size += sys.getsizeof(self._buckets) + sys.getsizeof(self._windows)
        for win, b in self._buckets.items():
            size += sys.getsizeof(b) + sys.getsizeof(b.offsets) + sys.getsizeof(b.millis)
            size += sys.getsizeof(win)
        return size
