"""Noticing that this process stood still (SIGSTOP, a paused VM, a stalled node) long enough for
the group to move on: a zombie. A blocking call in the poll loop (a transaction abort waiting
out a broker restart) is not a freeze, so the poll loop's own heartbeat cannot tell them apart;
a thread that only sleeps and ticks can: after a freeze its next tick comes late."""

from __future__ import annotations

import threading
import time


class FreezeWatch:
    TICK_S = 0.2

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._last = time.monotonic()
        self._frozen = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="js-freeze-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.TICK_S):
            self.check()
            self._last = time.monotonic()

    def check(self) -> bool:
        """True once the process stood still past the limit. Any thread may ask: right after a
        thaw the asker may run before the watch thread does, so the gap is measured here too."""
        if time.monotonic() - self._last > self.limit_s:
            self._frozen = True
        return self._frozen

    def alive(self) -> bool:
        return not self.check()

    def clear(self) -> None:
        """The worker dealt with the freeze (it rejoined with fresh state)."""
        self._last = time.monotonic()
        self._frozen = False

    def close(self) -> None:
        self._stop.set()
