import time

import pytest

from jobstream.consumers.runtime.protection import (
    BreakerState,
    CircuitBreaker,
    DlqGuard,
    RateLimiter,
)


def test_rate_limiter_burst_then_rate() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=3)
    assert [limiter.try_acquire(0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.delay_until_available(0.0) == pytest.approx(0.5)
    assert limiter.try_acquire(0.25) is False
    assert limiter.delay_until_available(0.25) == pytest.approx(0.25)
    assert limiter.try_acquire(0.5) is True
    # a long idle period refills only up to the burst
    assert [limiter.try_acquire(100.0) for _ in range(4)] == [True, True, True, False]


def test_rate_limiter_default_burst_and_clock_step_back() -> None:
    limiter = RateLimiter(rate_per_s=0.5)
    assert limiter.try_acquire(10.0) is True
    assert limiter.try_acquire(5.0) is False  # an earlier time adds no tokens
    assert limiter.delay_until_available(10.0) == pytest.approx(2.0)
    assert limiter.try_acquire(12.0) is True


def test_rate_limiter_validates() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)
    with pytest.raises(ValueError):
        RateLimiter(1, burst=0.5)


def breaker() -> CircuitBreaker:
    return CircuitBreaker(failure_ratio=0.5, window_s=10.0, min_calls=4, cooldown_s=5.0)


def test_breaker_opens_at_ratio_with_min_calls() -> None:
    b = breaker()
    for now in (0.0, 0.1, 0.2):
        b.record(False, now)
    assert b.state(0.3) is BreakerState.CLOSED  # under min_calls
    b.record(True, 0.4)
    assert b.state(0.4) is BreakerState.OPEN  # 3 of 4 failed
    assert b.allow(1.0) is False


def test_breaker_stays_closed_under_ratio() -> None:
    b = breaker()
    for i in range(20):
        b.record(i % 4 != 0, i * 0.1)  # one failure in four
    assert b.allow(2.0) and b.state(2.0) is BreakerState.CLOSED


def test_breaker_forgets_old_failures() -> None:
    b = breaker()
    for now in (0.0, 0.1, 0.2):
        b.record(False, now)
    for now in (20.0, 20.1, 20.2):  # the early failures left the window
        b.record(True, now)
    b.record(False, 20.3)
    assert b.state(20.3) is BreakerState.CLOSED


def open_breaker() -> CircuitBreaker:
    b = breaker()
    for now in (0.0, 0.1, 0.2, 0.3):
        b.record(False, now)
    assert b.state(0.3) is BreakerState.OPEN
    return b


def test_breaker_half_open_probe_success_closes() -> None:
    b = open_breaker()
    assert b.allow(5.0) is False
    assert b.state(5.3) is BreakerState.HALF_OPEN
    assert b.allow(5.3) is True
    assert b.allow(5.4) is False  # one probe at a time
    b.record(True, 6.0)
    assert b.state(6.0) is BreakerState.CLOSED
    b.record(False, 6.1)  # old failures were cleared on closing
    assert b.state(6.1) is BreakerState.CLOSED


def test_breaker_half_open_probe_failure_reopens() -> None:
    b = open_breaker()
    assert b.allow(6.0) is True
    b.record(False, 6.5)
    assert b.state(6.5) is BreakerState.OPEN
    assert b.allow(11.0) is False
    assert b.allow(11.5) is True


def test_breaker_lost_probe_is_replaced_after_cooldown() -> None:
    b = open_breaker()
    assert b.allow(6.0) is True
    assert b.allow(10.9) is False
    assert b.allow(11.0) is True


def test_breaker_ignores_late_results_while_open() -> None:
    b = open_breaker()
    b.record(True, 1.0)
    assert b.state(1.0) is BreakerState.OPEN


def test_dlq_guard() -> None:
    guard = DlqGuard(max_ratio=0.2, window_s=60.0, min_jobs=10)
    for i in range(9):
        guard.record(True, float(i))
    assert guard.tripped(9.0) is False  # under min_jobs
    for i in range(9, 50):
        guard.record(False, float(i))
    assert guard.tripped(50.0) is False  # 9 of 50
    guard.record(True, 50.0)
    guard.record(True, 50.0)
    assert guard.tripped(50.0) is True  # 11 of 52
    assert guard.tripped(70.0) is False  # early dead letters left the window


def test_window_memory_is_fixed() -> None:
    guard = DlqGuard(max_ratio=0.5, window_s=1.0, min_jobs=1)
    for i in range(10_000):
        guard.record(False, i * 0.001)
    assert len(guard._window._totals) == 10


def test_acquire_blocking_spaces_sends_evenly_with_burst_one() -> None:
    from jobstream.consumers.runtime.protection import RateLimiter, acquire_blocking

    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(4.0, burst=1)
    for _ in range(5):
        acquire_blocking(limiter, clock=lambda: now[0], sleep=sleep)
    assert abs(now[0] - 101.0) < 1e-6  # first at once, then one every 0.25 s
    assert all(abs(s - 0.25) < 1e-6 for s in slept)


def test_gate_counts_only_downstream_failures_and_holds_back_while_open() -> None:
    from jobstream.consumers.errors import JobTimeout, NotAdmitted, PermanentError
    from jobstream.consumers.runtime.protection import JobTypeGate

    gate = JobTypeGate(None, CircuitBreaker(0.5, 10.0, 2, 60.0), ("ValueError",))
    for err in (PermanentError("bad"), ValueError("configured permanent"), NotAdmitted()):
        gate.done(err)
    assert gate.accepting(0.0) and gate.admit()  # none of those says the downstream is sick
    gate.done(ConnectionError("down"))
    gate.done(JobTimeout("slow"))
    assert gate.transitions(time.monotonic()) == [BreakerState.OPEN]
    assert gate.transitions(time.monotonic()) == []  # reported once
    assert not gate.admit()
    assert not gate.try_start(time.monotonic())


def test_gate_rate_limit_alone() -> None:
    from jobstream.consumers.runtime.protection import JobTypeGate

    gate = JobTypeGate(RateLimiter(1.0, burst=2), None)
    assert [gate.try_start(0.0) for _ in range(3)] == [True, True, False]
    assert gate.admit() and gate.accepting(0.0) and gate.transitions(0.0) == []


def test_breaker_reports_a_probe_that_failed_between_two_looks() -> None:
    b = open_breaker()
    b.take_changes()
    assert b.allow(5.5)  # half open: the probe
    b.record(False, 5.6)
    assert b.take_changes() == [BreakerState.HALF_OPEN, BreakerState.OPEN]
    assert b.allow(11.0)
    b.record(True, 11.1)
    assert b.take_changes() == [BreakerState.HALF_OPEN, BreakerState.CLOSED]
