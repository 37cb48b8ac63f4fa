"""Compact in-memory set of completed job ids for one ledger partition.

A worker holds one view per owned partition, possibly millions of ids, so a dict of
str would cost ~150 bytes per entry. Instead: an open-addressing hash table (linear
probing) over flat arrays holding a 16-byte blake2b digest of the id (two uint64) and a
uint32 timestamp in seconds: 20 bytes per slot, 29-62 bytes per entry at the loads we
keep (0.325-0.7). A false positive needs a 128-bit digest collision: negligible.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable
from hashlib import blake2b
from struct import Struct

_DIGEST = Struct("<QQ")
_MAX_LOAD = 0.7  # live + tombstones; linear probing degrades quickly above this
_REBUILD_LOAD = 0.65  # leaves headroom below _MAX_LOAD after a rebuild
_MIN_CAPACITY = 16
# Slot states by the first digest word: 0 means no entry; then the second word tells
# empty (0) from tombstone (1). Real digests get a non-zero first word.
_TOMBSTONE = 1
_MAX_SECONDS = 0xFFFFFFFF  # uint32 seconds since the epoch: good until 2106
ROUTED_PREFIX = "@"  # a routing mark's key starts so (ledger.py routed_key)


def _digest(job_id: str) -> tuple[int, int]:
    hi, lo = _DIGEST.unpack(blake2b(job_id.encode(), digest_size=16).digest())
    return hi or 1, lo


class LedgerView:
    def __init__(self, capacity: int = _MIN_CAPACITY) -> None:
        """capacity: initial slots (rounded up to a power of two); the table grows anyway."""
        self._len = 0
        self.read_to = 0  # ledger offset the view was restored up to (a catch-up starts here)
        self.starts: dict[str, bytes] = {}  # crash evidence: latest value per key (ledger.py)
        self.heads: dict[str, str] = {}  # T.history chain heads: latest per key (ledger.py)
        # Jobs `jobs cancel` cancelled: id -> when (ms). Few, so a plain dict; written by the
        # restore and by the ledger tail's thread (ledger_tail.py), read by the poll thread and
        # by executor threads just before a handler runs.
        self.cancelled: dict[str, int] = {}
        # A routing mark (a key with ROUTED_PREFIX) was added: until then no record of this
        # partition's sources can have been routed, and the poll loop skips that lookup.
        self.routed = False
        self._tombstones = 0
        self._min_s = _MAX_SECONDS  # lower bound of live timestamps: lets expire skip scans
        self._allocate(max(_MIN_CAPACITY, 1 << (capacity - 1).bit_length()))

    def _allocate(self, capacity: int) -> None:
        self._mask = capacity - 1
        self._limit = int(capacity * _MAX_LOAD)
        self._hi = array("Q", bytes(8 * capacity))
        self._lo = array("Q", bytes(8 * capacity))
        self._ts = array("I", bytes(4 * capacity))

    def __len__(self) -> int:
        return self._len

    def __contains__(self, job_id: object) -> bool:
        if not isinstance(job_id, str):
            return False
        hi, lo = _digest(job_id)
        his, los, mask = self._hi, self._lo, self._mask
        i = lo & mask
        while True:
            h = his[i]
            if h == hi:
                if los[i] == lo:
                    return True
            elif h == 0 and los[i] == 0:
                return False
            i = (i + 1) & mask

    def add(self, job_id: str, finished_at_ms: int) -> None:
        """Record a completed job; re-adding an id updates its timestamp."""
        self.add_many(((job_id, finished_at_ms),))

    def add_many(self, entries: Iterable[tuple[str, int]]) -> None:
        """add() for each (job_id, finished_at_ms), e.g. while restoring from the topic.

        This is the hot loop (a restore adds millions), so it is written out inline with
        locals: helper calls and attribute lookups cost more than the probing itself.
        """
        unpack = _DIGEST.unpack
        his, los, ts, mask = self._hi, self._lo, self._ts, self._mask
        size, tombstones, limit, min_s = self._len, self._tombstones, self._limit, self._min_s
        routed = self.routed
        try:
            for job_id, finished_at_ms in entries:
                if not routed and job_id.startswith(ROUTED_PREFIX):
                    routed = self.routed = True
                hi, lo = unpack(blake2b(job_id.encode(), digest_size=16).digest())
                hi = hi or 1
                # Round up so an entry never expires early; 0 is kept for free slots.
                seconds = min(max(1, -(-finished_at_ms // 1000)), _MAX_SECONDS)
                if seconds < min_s:
                    min_s = seconds
                i = lo & mask
                free = -1  # first tombstone on the probe path: reused if the id is absent
                while True:
                    h = his[i]
                    if h == hi:
                        if los[i] == lo:
                            break
                    elif h == 0:
                        if los[i] == 0:
                            break
                        if free < 0:
                            free = i
                    i = (i + 1) & mask
                if h == hi:  # the probe stopped on this id (an empty slot has h == 0 != hi)
                    ts[i] = seconds
                    continue
                if free >= 0:
                    i = free
                    tombstones -= 1
                his[i], los[i], ts[i] = hi, lo, seconds
                size += 1
                if size + tombstones > limit:
                    self._len, self._tombstones, self._min_s = size, tombstones, min_s
                    self._rebuild()
                    his, los, ts, mask = self._hi, self._lo, self._ts, self._mask
                    tombstones, limit = 0, self._limit
        finally:  # counters live in locals inside the loop; store them even on error
            self._len, self._tombstones, self._min_s = size, tombstones, min_s

    def expire(self, older_than_ms: int) -> int:
        """Drop entries finished before older_than_ms; returns how many were dropped."""
        if self.cancelled:
            for job_id, at in list(self.cancelled.items()):
                if at < older_than_ms:
                    self.cancelled.pop(job_id, None)
        cutoff = (older_than_ms - 1) // 1000  # drop s where s * 1000 < older_than_ms
        if self._len == 0 or self._min_s > cutoff:
            return 0
        his, los, ts = self._hi, self._lo, self._ts
        dropped, new_min = 0, _MAX_SECONDS
        for i, s in enumerate(ts):
            if s == 0:
                continue  # empty or tombstone
            if s <= cutoff:
                his[i], los[i], ts[i] = 0, _TOMBSTONE, 0
                dropped += 1
            elif s < new_min:
                new_min = s
        self._min_s = new_min
        self._len -= dropped
        self._tombstones += dropped
        # Rebuild when the live entries fit a table half the size: memory follows them.
        capacity = self._mask + 1
        if capacity > _MIN_CAPACITY and self._len < capacity * _REBUILD_LOAD / 2:
            self._rebuild()
        return dropped

    def _rebuild(self) -> None:
        """Rehash live entries into the smallest table they fill to at most 0.65: after
        growth the load is 0.35, after a shrink above 0.325, so <= 62 bytes per entry."""
        old_hi, old_lo, old_ts = self._hi, self._lo, self._ts
        capacity = _MIN_CAPACITY
        while self._len > capacity * _REBUILD_LOAD:
            capacity *= 2
        self._allocate(capacity)
        self._tombstones = 0
        his, los, ts, mask = self._hi, self._lo, self._ts, self._mask
        for h, lo, s in zip(old_hi, old_lo, old_ts, strict=True):
            if h:  # live entries are unique, so no duplicate check is needed
                i = lo & mask
                while his[i]:
                    i = (i + 1) & mask
                his[i], los[i], ts[i] = h, lo, s

    def nbytes(self) -> int:
        """Approximate memory held by the table's arrays."""
        return sys.getsizeof(self._hi) + sys.getsizeof(self._lo) + sys.getsizeof(self._ts)
