"""Key-ordered dispatch within one partition.

Jobs with the same key run one after another in submission (offset) order; jobs with
different keys run in parallel. The key is the record key as given: the publisher
uses the job id when a job has no key, so None only groups records that really have
no key (e.g. written by a foreign producer), and those then run one at a time.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")
Key = bytes | None


class KeyQueues(Generic[T]):
    def __init__(self) -> None:
        # A key is running while it is in this dict; its deque holds the items waiting.
        self._running: dict[Key, deque[T]] = {}
        self._queued = 0

    def submit(self, key: Key, item: T) -> bool:
        """True when item may run now; otherwise it waits behind its key."""
        waiting = self._running.get(key)
        if waiting is None:
            self._running[key] = deque()
            return True
        waiting.append(item)
        self._queued += 1
        return False

    def done(self, key: Key) -> T | None:
        """The running item of key finished: return the next item to run for that key
        (it now counts as running), or None and free the key."""
        try:
            waiting = self._running[key]
        except KeyError:
            raise ValueError(f"key {key!r} has no running item") from None
        if waiting:
            self._queued -= 1
            return waiting.popleft()
        del self._running[key]
        return None

    def drain(self) -> list[T]:
        """Remove and return every queued item (not the running ones), e.g. on
        revocation. Running keys stay running until done() is called for them."""
        items: list[T] = []
        for waiting in self._running.values():
            items.extend(waiting)
            waiting.clear()
        self._queued = 0
        return items

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def running_keys(self) -> int:
        return len(self._running)
