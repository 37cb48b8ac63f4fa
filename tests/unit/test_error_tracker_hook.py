"""docs/hooks.md's example, examples/error_tracker.py, loaded as a job module the way
`jobstream worker --app` loads one: its hook is registered, and a failed attempt reaches an
error tracker (a local HTTP server here) while other outcomes do not."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from jobstream import Finished, Outcome
from jobstream.consumers import jobs
from jobstream.consumers.errors import Failure
from jobstream.consumers.runtime import hooks
from jobstream.consumers.runtime.types import Category, Job


class _Tracker(HTTPServer):
    events: list[dict[str, object]]


class _Store(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.events.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tracker() -> Iterator[_Tracker]:
    server = _Tracker(("127.0.0.1", 0), _Store)
    server.events = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def fresh_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example registers a job and a hook: keep them out of the other tests."""
    monkeypatch.setattr(jobs, "_REGISTRY", {})
    monkeypatch.setattr(hooks, "_registered", [])
    monkeypatch.delitem(sys.modules, "examples.error_tracker", raising=False)


def _job() -> Job:
    return Job("jobs.orders.confirmation", 2, 41, b"o-1", b"", {}, [],
               job_type="orders.confirmation", job_id="j-1", attempt=3)


def _failed(dead: bool) -> Finished:
    failure = Failure(Category.PERMANENT, "ValueError", "negative total", "Traceback ...")
    return Finished(_job(), "orders.confirmation", Outcome.FAILED, 0.012, failure, dead=dead)


def _load(monkeypatch: pytest.MonkeyPatch, url: str) -> hooks.Hook:
    monkeypatch.setenv("ERROR_TRACKER_URL", url)
    registered = jobs.load_app("examples.error_tracker")
    assert "orders.confirmation" in registered
    (hook,) = hooks.registered()
    return hook


@pytest.mark.usefixtures("fresh_registries")
def test_the_example_reports_a_failed_job(
    tracker: _Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = _load(monkeypatch, f"http://127.0.0.1:{tracker.server_port}/api/1/store/")
    hook.after_outcome(_failed(dead=True))
    hook.after_outcome(Finished(_job(), "orders.confirmation", Outcome.SUCCEEDED, 0.01))
    assert hook.flush(5)  # type: ignore[attr-defined]
    assert len(tracker.events) == 1, "one event per failed attempt, none for a success"
    event = tracker.events[0]
    assert event["level"] == "error"
    assert event["fingerprint"] == ["orders.confirmation", "ValueError"]
    assert event["extra"] == {"job_id": "j-1", "attempt": 3, "topic": "jobs.orders.confirmation",
                              "partition": 2, "offset": 41, "duration_s": 0.012}
    assert event["tags"] == {"job_type": "orders.confirmation", "category": "permanent",
                             "dead_lettered": "true"}


@pytest.mark.usefixtures("fresh_registries")
def test_a_tracker_that_is_down_costs_reports_not_time(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hook = _load(monkeypatch, f"http://127.0.0.1:{port}/")
    started = time.monotonic()
    hook.after_outcome(_failed(dead=False))
    assert time.monotonic() - started < 0.05, "the loop's thread only queues the event"
    assert hook.flush(5)  # type: ignore[attr-defined]
    assert (hook.sent, hook.dropped) == (0, 1)  # type: ignore[attr-defined]


def test_add_hook_refuses_what_is_not_a_hook() -> None:
    with pytest.raises(TypeError, match="add_hook takes a Hook instance, got function"):
        hooks.add_hook(lambda: None)  # type: ignore[arg-type]
