"""A TCP proxy on loopback that breaks connections on demand: the network between the workers
and the broker in the network-blip scenario. It runs its own asyncio loop in a thread, so the
test thread drives it with plain method calls."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class FlakyProxy:
    """127.0.0.1:listen_port -> 127.0.0.1:upstream_port. `drop(n)` resets n random live
    connections; `blackout(s)` resets all of them and refuses new ones for s seconds."""

    def __init__(self, listen_port: int, upstream_port: int, seed: int = 0) -> None:
        self.listen_port = listen_port
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.dropped = 0  # connections reset by drop() or blackout()
        self.refused = 0  # connections refused during a blackout
        self.accepted = 0
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._refuse_until = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="flaky-proxy")
        self._server: asyncio.Server | None = None

    # -- control (any thread) ----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._server = self._call(
            asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)
        )

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def drop(self, n: int = 1) -> int:
        """Reset up to n random live connections (both sides); how many were reset."""
        return self._call(self._drop(n))

    def blackout(self, seconds: float) -> int:
        """Reset every connection and refuse new ones for `seconds`."""
        return self._call(self._blackout(seconds))

    @property
    def live(self) -> int:
        return len(self._conns)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- the loop ------------------------------------------------------------------------------

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._loop.time() < self._refuse_until:
            self.refused += 1
            client_w.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:  # the broker is down: the client sees a reset, as it would
            client_w.transport.abort()
            return
        self.accepted += 1
        conn = (client_w, up_w)
        self._conns.add(conn)
        try:
            await asyncio.gather(self._pipe(client_r, up_w), self._pipe(up_r, client_w))
        finally:
            self._conns.discard(conn)
            for w in conn:
                w.transport.abort()

    @staticmethod
    async def _pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.transport.abort()  # one side gone: the other goes too

    async def _drop(self, n: int) -> int:
        victims = self.rng.sample(list(self._conns), min(n, len(self._conns)))
        for conn in victims:
            self._conns.discard(conn)
            for w in conn:
                w.transport.abort()
        self.dropped += len(victims)
        return len(victims)

    async def _blackout(self, seconds: float) -> int:
        self._refuse_until = self._loop.time() + seconds
        return await self._drop(len(self._conns))

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            for w in conn:
                with contextlib.suppress(Exception):
                    w.transport.abort()
        self._conns.clear()
