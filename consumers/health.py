"""One HTTP port: /metrics, /healthz (the poll loop made progress recently, and every watched
part, such as the event loop of async handlers, can run), /readyz (healthy, joined the group,
every assigned partition's ledger view restored, a broker reachable, and the poll loop not
blocked for seconds)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Every reason /readyz and /healthz give for not being ready or healthy, as templates; the
# parts of the worker fill them in. docs/troubleshooting.md lists each (a test checks).
READY = "ready"
OK = "ok"
STARTING = "starting"
NOT_JOINED = "not joined yet"
RESTORING = "restoring ledger views"
NO_BROKER = "no broker reachable at {bootstrap}"
LOOP_BLOCKED = "poll loop blocked for {seconds:.1f}s (waiting on the brokers)"
LOOP_STALLED = "poll loop stalled for {seconds:.1f}s"
ASYNC_LOOP_STOPPED = "the event loop of async handlers stopped"
ASYNC_LOOP_BLOCKED = (
    "the event loop of async handlers is blocked for {seconds:.1f}s "
    "(a handler calls blocking code in an async def?)"
)
# A watched part's problem (ASYNC_LOOP_*) makes the worker unhealthy and so not ready too.
READINESS_REASONS = (
    STARTING, NOT_JOINED, RESTORING, NO_BROKER, LOOP_BLOCKED, ASYNC_LOOP_STOPPED,
    ASYNC_LOOP_BLOCKED,
)
HEALTH_REASONS = (LOOP_STALLED, ASYNC_LOOP_STOPPED, ASYNC_LOOP_BLOCKED)


class Health:
    """Shared between the poll loop (writes) and the HTTP thread (reads)."""

    def __init__(self, stall_after_s: float = 30.0, ready_stall_s: float = 5.0) -> None:
        self.last_poll = time.monotonic()
        self.stall_after_s = stall_after_s
        # The loop sets `ready` only between calls: one blocked on the brokers (a commit in an
        # outage) cannot clear it, so readiness also needs a recent beat.
        self.ready_stall_s = ready_stall_s
        self.ready = False
        self.reason = STARTING
        self._watches: list[Callable[[float], str | None]] = []

    def watch(self, problem: Callable[[float], str | None]) -> None:
        """Add a check: problem(stall_after_s) says why a part cannot work, or None."""
        self._watches.append(problem)

    def _problem(self) -> str | None:
        for problem in self._watches:
            why = problem(self.stall_after_s)
            if why:
                return why
        return None

    def beat(self) -> None:
        self.last_poll = time.monotonic()

    def healthy(self) -> tuple[bool, str]:
        age = time.monotonic() - self.last_poll
        if age > self.stall_after_s:
            return False, LOOP_STALLED.format(seconds=age)
        why = self._problem()
        return (False, why) if why else (True, OK)

    def readiness(self) -> tuple[bool, str]:
        age = time.monotonic() - self.last_poll
        if age > min(self.ready_stall_s, self.stall_after_s):  # never ready when not healthy
            return False, LOOP_BLOCKED.format(seconds=age)
        why = self._problem()
        if why:
            return False, why
        return (True, READY) if self.ready else (False, self.reason)


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        health: Health,
        registry: CollectorRegistry,
        extra_ready: Callable[[], bool] | None = None,
    ) -> None:
        h, reg = health, registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(reg), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok, why = h.healthy()
                    self._send(200 if ok else 503, why.encode())
                elif path == "/readyz":
                    ok, why = h.readiness()
                    self._send(200 if ok else 503, why.encode())
                else:
                    self._send(404, b"not found")

            def _send(
                self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8"
            ) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes every few seconds would drown the job logs

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="js-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for a serve_forever that never ran
            self.server.shutdown()
        self.server.server_close()
