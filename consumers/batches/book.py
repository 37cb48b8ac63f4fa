"""The counts of the batches of one jobstream.batches partition, built from its records (pure:
the owner feeds it what it reads, the CLI's batch view too).

A batch is ready to close when its record is known, it is open, and every member has a final
outcome. Outcomes read after the batch closed (a member replayed from the DLQ that then
succeeded) update the counts; the batch stays closed and its callback is not run again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobstream.schemas import batch_record as br


@dataclass
class Entry:
    batch: br.Batch | None = None
    outcomes: dict[str, tuple[str, int]] = field(default_factory=dict)  # member -> (o, at)
    closing: bool = False  # a close is being committed (not to be planned again)

    def counts(self) -> dict[str, int]:
        c = dict.fromkeys(br.OUTCOMES, 0)
        for o, _ in self.outcomes.values():
            c[o] += 1
        return c

    @property
    def last_at(self) -> int:
        return max((at for _, at in self.outcomes.values()), default=0)

    @property
    def is_open(self) -> bool:
        return self.batch is not None and self.batch.state == br.OPEN

    @property
    def complete(self) -> bool:
        return self.batch is not None and len(self.outcomes) >= self.batch.total


class Book:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.dirty: set[str] = set()

    def apply(self, key: bytes | None, value: bytes | None) -> str | None:
        """Read one record; the batch id it is about (None for a record not ours)."""
        bid, member = br.split_key(key)
        if not bid:
            return None
        e = self.entries.get(bid)
        if member is None:
            batch = br.decode_batch(value)
            if batch is None:
                if value is None and e is not None:  # a tombstone: the batch is gone
                    del self.entries[bid]
                    self.dirty.discard(bid)
                return None
            if e is None:
                e = self.entries[bid] = Entry()
            if e.batch is not None and e.batch.state == br.CLOSED:
                batch = e.batch if batch.state == br.OPEN else batch  # closed stays closed
            e.batch = batch
            e.closing = False if batch.state == br.CLOSED else e.closing
        else:
            out = br.decode_member(value)
            if e is None:
                e = self.entries[bid] = Entry()  # its record may come later (at least once)
            if out is None:
                e.outcomes.pop(member, None)
            else:
                e.outcomes[member] = out
        self.dirty.add(bid)
        return bid

    def ready(self) -> list[str]:
        """Batches to close now (open, every member final, no close in flight); clears the
        dirty set."""
        out = [bid for bid in self.dirty
               if (e := self.entries.get(bid)) is not None and e.is_open and e.complete
               and not e.closing]
        self.dirty.clear()
        return sorted(out)

    def open_count(self) -> int:
        return sum(1 for e in self.entries.values() if e.is_open)
