"""The DLQ browser's data: every record of a T.dlq kept in memory and read incrementally (a
page load reads only what arrived since the last one), filtered with the `dlq list` filters
(consumers/ops/dlq.py). 10,000 dead letters are a few MB; a topic's first read costs one full
bounded read (consumers/ops/dlq_reader.py's Reader)."""

from __future__ import annotations

import heapq
import threading
from collections import Counter
from dataclasses import dataclass, field

from jobstream.config.settings import Settings
from jobstream.consumers.ops.dlq import DeadLetter, DlqError, Filters
from jobstream.consumers.ops.dlq_reader import Reader, Selection

MAX_TOPICS = 200  # cached DLQ topics; the oldest read is dropped beyond it


def _order(dl: DeadLetter) -> tuple[bool, int, int, int]:
    return dl.when_ms is None, dl.when_ms or 0, dl.partition, dl.offset


@dataclass
class _Topic:
    lock: threading.Lock = field(default_factory=threading.Lock)
    records: dict[int, dict[int, DeadLetter]] = field(default_factory=dict)  # p -> off -> dl
    next: dict[int, int] = field(default_factory=dict)  # partition -> next offset to read


class DlqView:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._topics: dict[str, _Topic] = {}
        self._lock = threading.Lock()

    def _topic(self, name: str) -> _Topic:
        with self._lock:
            t = self._topics.get(name)
            if t is None:
                if len(self._topics) >= MAX_TOPICS:
                    self._topics.pop(next(iter(self._topics)))
                t = self._topics[name] = _Topic()
            return t

    def records(self, topic: str,
                bounds: dict[int, tuple[int, int]] | None = None) -> list[DeadLetter]:
        """Every record now in the topic, up to the end offsets taken now (or given: the
        overview has them from one batched call, and an unchanged topic is not read)."""
        t = self._topic(topic)
        with t.lock:
            if bounds is not None and bounds and all(
                    t.next.get(p) == hi for p, (_, hi) in bounds.items()) and all(
                    min(t.records.get(p, {}), default=lo) >= lo
                    for p, (lo, _) in bounds.items()):
                return [dl for p in sorted(t.records) for dl in t.records[p].values()]
            r = Reader(self.settings, topic)
            try:
                bounds = bounds or r.bounds()
                starts: dict[int, int] = {}
                for p, (lo, hi) in bounds.items():
                    held = t.records.setdefault(p, {})
                    if t.next.get(p, 0) > hi:  # the topic was recreated: start over
                        held.clear()
                        t.next[p] = lo
                    for off in [o for o in held if o < lo]:  # retention removed them
                        del held[off]
                    starts[p] = max(lo, t.next.get(p, lo))
                ends = {p: hi for p, (_, hi) in bounds.items()}
                for dl in r.read(starts, ends):
                    t.records[dl.partition][dl.offset] = dl
                for p, hi in ends.items():
                    t.next[p] = hi
            finally:
                r.close()
            return [dl for p in sorted(t.records) for dl in t.records[p].values()]

    def select(self, topic: str, filters: Filters) -> Selection:
        """As dlq_reader.select: the oldest `limit` matching records, every match counted."""
        sel = Selection([])
        matching = []
        for dl in self.records(topic):
            if filters.matches(dl):
                matching.append(dl)
                sel.matched += 1
                sel.by_class[dl.error_class or "<none>"] += 1
        sel.rows = (sorted(matching, key=_order) if filters.limit is None
                    else heapq.nsmallest(filters.limit, matching, key=_order))
        return sel

    def one(self, topic: str, partition: int, offset: int) -> DeadLetter:
        for dl in self.records(topic):
            if dl.partition == partition and dl.offset == offset:
                return dl
        raise DlqError(f"no dead letter at {topic} {partition}:{offset} (replayed records stay; "
                       "this position holds none, or retention removed it)")

    def sizes(self, topic: str) -> Counter[str]:
        return Counter(dl.error_class or "<none>" for dl in self.records(topic))
