"""Snapshots of the scheduler's pending index (consumers/scheduling/snapshot.py, index.py
to_bytes/from_bytes): a dump loads into the same index, entries taken out to be read back are
due again in it, and a reader picks only a complete, intact snapshot, the one covering most.

Restoring a T.scheduled partition record by record tops out at ~40-70k entries/s in Python;
the target is 200k/s, so a new owner loads the last snapshot and reads only what came after."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from jobstream.consumers.scheduling import snapshot
from jobstream.consumers.scheduling.index import IndexFormatError, PendingIndex, key_hash
from jobstream.consumers.scheduling.snapshot import Meta, pick, split

NOW = 1_800_000_000_000


def _index(n: int) -> tuple[PendingIndex, dict[bytes, tuple[int, int]]]:
    """An index of n records with reschedules and tombstones, and what is live in it."""
    idx, live = PendingIndex(), {}
    ids = [os.urandom(16) for _ in range(n)]
    for off, jid in enumerate(ids):
        due = NOW + random.randint(0, 3_600_000)
        idx.add(key_hash(jid), off, due)
        live[jid] = (off, due)
        if off % 7 == 0:  # cancelled
            idx.remove(key_hash(jid))
            del live[jid]
    for k, jid in enumerate(ids[1::5]):  # rescheduled: a newer record for the id
        if jid in live:
            off, due = n + k, NOW + random.randint(0, 3_600_000)
            idx.add(key_hash(jid), off, due)
            live[jid] = (off, due)
    return idx, live


def _due_entries(idx: PendingIndex) -> list[tuple[int, int]]:
    return idx.take_until(NOW + 10 * 3_600_000)


def test_a_dump_loads_into_the_same_index() -> None:
    idx, live = _index(30_000)
    loaded = PendingIndex.from_bytes(idx.to_bytes())
    assert len(loaded) == len(live)
    assert all(loaded.current(key_hash(j)) == off for j, (off, _) in live.items())
    assert loaded.next_due_ms() == idx.next_due_ms()
    assert _due_entries(loaded) == _due_entries(idx)


def test_entries_taken_out_to_be_read_back_are_due_again_after_a_load() -> None:
    """Without them in the dump, a job read back (due within seconds) when the snapshot was
    written would be live in the loaded table and in no bucket: never dispatched, lost."""
    idx, _ = _index(5_000)
    taken = idx.take_until(NOW + 600_000)  # what the scheduler has read back or is reading
    assert taken
    loaded = PendingIndex.from_bytes(idx.to_bytes(extra=taken))
    assert sorted(_due_entries(loaded)) == sorted(taken + _due_entries(idx))
    assert idx.take_until(NOW + 600_000) == []  # the dump did not put them back in the source


def test_the_hash_is_the_same_in_another_process() -> None:
    code = "from jobstream.consumers.scheduling.index import key_hash; print(key_hash(b'job-1'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"}, check=True)
    assert int(other.stdout) == key_hash(b"job-1")


@pytest.mark.parametrize("damage", ["cut", "magic", "sizes", "extra"])
def test_a_damaged_dump_is_refused_with_a_reason(damage: str) -> None:
    data = bytearray(_index(2_000)[0].to_bytes())
    if damage == "cut":
        data = data[:-3]
    elif damage == "magic":
        data[:4] = b"XXXX"
    elif damage == "sizes":
        data[14:22] = (10**12).to_bytes(8, "little")  # used > capacity
    else:
        data += b"\0"
    with pytest.raises(IndexFormatError):
        PendingIndex.from_bytes(bytes(data))


def _records(dump: bytes, covers: int) -> list[tuple[bytes | None, bytes | None]]:
    return [(meta.header(), chunk) for _key, chunk, meta in split(dump, covers)]


def test_a_big_dump_is_split_and_joined(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "CHUNK_BYTES", 1000)
    dump = os.urandom(4500)
    recs = split(dump, 42)
    assert len(recs) == 5 and all(len(c) <= 1000 for _, c, _ in recs)
    assert [k for k, _, _ in recs] == [f"chunk/{i}".encode() for i in range(5)]
    assert pick(_records(dump, 42)) == (42, dump)


def test_the_complete_snapshot_covering_most_is_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "CHUNK_BYTES", 100)
    old, new, newest = os.urandom(250), os.urandom(250), os.urandom(250)
    partial = _records(newest, 300)[:-1]  # its last chunk missing (compacted, never written)
    records = _records(old, 100) + _records(new, 200) + partial
    assert pick(records) == (200, new)
    # Interleaved writers (an old owner and the new one) still give a complete one.
    a, b = _records(old, 100), _records(new, 200)
    mixed = [r for pair in zip(a, b, strict=True) for r in pair]
    assert pick(mixed) == (200, new)


def test_a_snapshot_whose_bytes_do_not_match_its_digest_is_not_picked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "CHUNK_BYTES", 100)
    good = _records(os.urandom(250), 100)
    bad = _records(os.urandom(250), 200)
    bad[1] = (bad[1][0], b"x" * len(bad[1][1] or b""))
    assert pick(good + bad) == (100, b"".join(c or b"" for _, c in good))
    assert pick(bad) is None


@pytest.mark.parametrize("raw", [None, b"", b"v=2;id=a;i=0;n=1;covers=1;digest=x",
                                 b"v=1;id=a;i=1;n=1;covers=1;digest=x", b"v=1;id=a;i=0",
                                 b"v=1;id=a;i=x;n=1;covers=1;digest=x", b"\xff\xfe"])
def test_a_malformed_header_is_no_snapshot(raw: bytes | None) -> None:
    assert Meta.parse(raw) is None
    assert pick([(raw, b"data")]) is None
