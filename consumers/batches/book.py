"""The counts of the batches of one jobstream.batches partition, built from its records (pure:
the owner feeds it what it reads, the CLI's batch view too).

A batch is ready to close when its record is known, it is open, and every member has a final
outcome. Outcomes read after the batch closed (a member replayed from the DLQ that then
succeeded) update the counts; the batch stays closed and its callback is not run again.

The owner's book is pruned (`prune=True`): once a batch is closed, its succeeded members are
kept as a number, not one entry each (no final outcome changes from succeeded, and a closed
batch with 10,000 members would otherwise hold 10,000 entries until it is retired). The
dead-lettered ones stay: a replay can still turn them into successes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobstream.schemas import batch_record as br


@dataclass
class Entry:
    batch: br.Batch | None = None
    outcomes: dict[str, tuple[str, int]] = field(default_factory=dict)  # member -> (o, at)
    closing: bool = False  # a close is being committed (not to be planned again)
    pruned: int = 0  # succeeded members counted here, no longer in outcomes (closed, pruned)
    pruned_at: int = 0  # the latest finish time among them

    def counts(self) -> dict[str, int]:
        c = dict.fromkeys(br.OUTCOMES, 0)
        for o, _ in self.outcomes.values():
            c[o] += 1
        c[br.SUCCEEDED] += self.pruned
        return c

    @property
    def last_at(self) -> int:
        return max(self.pruned_at, max((at for _, at in self.outcomes.values()), default=0))

    def prune(self) -> None:
        """Count the succeeded members instead of keeping them (a closed batch)."""
        done = [m for m, (o, _) in self.outcomes.items() if o == br.SUCCEEDED]
        for m in done:
            self.pruned_at = max(self.pruned_at, self.outcomes.pop(m)[1])
        self.pruned += len(done)

    @property
    def is_open(self) -> bool:
        return self.batch is not None and self.batch.state == br.OPEN

    @property
    def complete(self) -> bool:
        return self.batch is not None and len(self.outcomes) + self.pruned >= self.batch.total

    @property
    def is_closed(self) -> bool:
        return self.batch is not None and self.batch.state == br.CLOSED


class Book:
    def __init__(self, prune: bool = False) -> None:
        self.entries: dict[str, Entry] = {}
        self.dirty: set[str] = set()
        self._prune = prune

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
            if self._prune and batch.state == br.CLOSED:
                e.prune()
        else:
            out = br.decode_member(value)
            if out is None:  # a tombstone (a retired batch's)
                if e is not None:
                    e.outcomes.pop(member, None)
                return None if e is None else bid
            if e is None:
                e = self.entries[bid] = Entry()  # its record may come later (at least once)
            if e.pruned and member not in e.outcomes:
                return bid  # it had succeeded: a repeat of its record changes nothing
            if self._prune and e.is_closed and out[0] == br.SUCCEEDED:
                e.outcomes.pop(member, None)  # a replayed dead letter that succeeded
                e.pruned += 1
                e.pruned_at = max(e.pruned_at, out[1])
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

    def retirable(self, before_ms: int) -> list[str]:
        """Batches to retire: closed before `before_ms`, and member records whose batch record
        is gone (a member of a retired batch replayed later) last written before it."""
        out = []
        for bid, e in self.entries.items():
            if e.is_closed:
                assert e.batch is not None
                if (e.batch.closed_ms or 0) < before_ms and not e.closing:
                    out.append(bid)
            elif e.batch is None and e.last_at < before_ms:
                out.append(bid)
        return sorted(out)
