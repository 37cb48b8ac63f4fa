"""The loop's producer polls (consumers/runtime/clients.py Reports): a producer with nothing to
serve is not polled on every pass, one with records in flight or reports due always is."""

from __future__ import annotations

import time

from jobstream.consumers.runtime.clients import IDLE_SERVE_S, Reports


class _Producer:
    def __init__(self) -> None:
        self.queued = 0
        self.polls = 0

    def __len__(self) -> int:
        return self.queued

    def poll(self, timeout: float) -> int:
        assert timeout == 0
        self.polls += 1
        served, self.queued = self.queued, 0
        return served


def test_an_idle_producer_is_polled_once_per_idle_period_not_per_pass() -> None:
    p, reports = _Producer(), Reports()
    for _ in range(100):
        reports.serve(p)
    assert p.polls == 1  # the first pass; then only every IDLE_SERVE_S
    time.sleep(IDLE_SERVE_S * 1.5)
    reports.serve(p)
    assert p.polls == 2


def test_records_in_flight_or_reports_due_are_served_on_every_pass() -> None:
    p, reports = _Producer(), Reports()
    reports.serve(p)
    for i in range(1, 20):
        p.queued = 3
        assert reports.serve(p) == 3
        assert p.polls == 1 + i
