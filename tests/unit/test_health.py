"""Readiness: the loop's own verdict, and a recent beat (a blocked loop cannot update it)."""

from __future__ import annotations

import time

from consumers.health import Health


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
