"""Readiness: the loop's own verdict, and a recent beat (a blocked loop cannot update it)."""

from __future__ import annotations

import time

from jobstream.consumers.health import Health


def test_ready_when_the_loop_says_so_and_beat_lately() -> None:
    h = Health()
    h.ready = True
    h.beat()
    assert h.readiness() == (True, "ready")


def test_not_ready_gives_the_loops_reason() -> None:
    h = Health()
    h.ready, h.reason = False, "restoring ledger views"
    h.beat()
    assert h.readiness() == (False, "restoring ledger views")


def test_a_loop_blocked_past_the_limit_is_not_ready_though_it_last_said_ready() -> None:
    h = Health(ready_stall_s=5.0)
    h.ready = True
    h.last_poll = time.monotonic() - 6.0  # e.g. a commit waiting out a broker outage
    ok, why = h.readiness()
    assert not ok
    assert "blocked for 6." in why
    assert h.healthy()[0]  # alive still: /healthz only fails after stall_after_s


def test_a_stopped_or_blocked_event_loop_fails_healthz_and_readyz() -> None:
    """Issue 26 item 12: with the async handlers' event loop gone, /healthz and /readyz still
    said 200 while every async job stayed started for ever. A watched part that cannot run
    (here the executor's loop, stopped) now fails both, naming it."""
    from jobstream.consumers.runtime.executor import Executor

    ex = Executor(1)
    h = Health(stall_after_s=5.0)
    h.watch(ex.loop_problem)
    h.ready = True
    h.beat()
    assert h.healthy() == (True, "ok") and h.readiness() == (True, "ready")
    ex.shutdown()
    deadline = time.monotonic() + 5
    while h.healthy()[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    h.beat()
    ok, why = h.healthy()
    assert not ok and "event loop" in why and "stopped" in why
    assert h.readiness() == (False, why)
