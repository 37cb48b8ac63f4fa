"""Downstream protection: rate limit, circuit breaker, DLQ-ratio guard.

Time is passed in as `now` (monotonic seconds) so the logic is testable without sleeping.
Sliding windows are bucketed counts: memory stays fixed whatever the job rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from enum import StrEnum

from jobstream.config.settings import JobTypeSettings
from jobstream.consumers.errors import NotAdmitted, category_of
from jobstream.consumers.runtime.types import Category

_DOWNSTREAM = (Category.TRANSIENT, Category.TIMEOUT)


class _Window:
    """Counts (total, hits) over roughly the last window_s seconds, in fixed buckets."""

    def __init__(self, window_s: float, buckets: int = 10) -> None:
        if window_s <= 0:
            raise ValueError(f"window must be > 0 seconds, got {window_s}")
        self._width = window_s / buckets
        self._ids = [-1] * buckets  # which time slice each bucket currently counts
        self._totals = [0] * buckets
        self._hits = [0] * buckets

    def add(self, hit: bool, now: float) -> None:
        slice_id = math.floor(now / self._width)
        i = slice_id % len(self._ids)
        if self._ids[i] > slice_id:  # a time already out of the window: nothing to count
            return
        if self._ids[i] != slice_id:  # bucket holds an older slice: reuse it
            self._ids[i], self._totals[i], self._hits[i] = slice_id, 0, 0
        self._totals[i] += 1
        self._hits[i] += int(hit)

    def counts(self, now: float) -> tuple[int, int]:
        oldest = math.floor(now / self._width) - len(self._ids) + 1
        total = hits = 0
        for slice_id, t, h in zip(self._ids, self._totals, self._hits, strict=True):
            if slice_id >= oldest:
                total += t
                hits += h
        return total, hits

    def clear(self) -> None:
        n = len(self._ids)
        self._totals, self._hits = [0] * n, [0] * n


class RateLimiter:
    """Token bucket: rate_per_s sustained, bursts up to `burst` (default: one second's
    worth, at least 1)."""

    def __init__(self, rate_per_s: float, burst: float | None = None) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate must be > 0 per second, got {rate_per_s}")
        self._rate = rate_per_s
        self._burst = max(1.0, rate_per_s) if burst is None else burst
        if self._burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self._tokens = self._burst
        self._last: float | None = None

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        if self._last is None or now > self._last:  # ignore clocks that step back
            self._last = now

    def try_acquire(self, now: float) -> bool:
        self._refill(now)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def delay_until_available(self, now: float) -> float:
        """Seconds until try_acquire would succeed (0 when it would now)."""
        self._refill(now)
        return max(0.0, (1 - self._tokens) / self._rate)


def acquire_blocking(
    limiter: RateLimiter,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait until the limiter grants a token (for loops that may simply sleep, e.g. a replay)."""
    while not limiter.try_acquire(clock()):
        sleep(limiter.delay_until_available(clock()))


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens when the failure ratio over window_s reaches failure_ratio (given at least
    min_calls); after cooldown_s lets one probe through: success closes, failure reopens."""

    def __init__(
        self, failure_ratio: float, window_s: float, min_calls: int, cooldown_s: float
    ) -> None:
        if not 0 < failure_ratio <= 1:
            raise ValueError(f"failure_ratio must be in (0, 1], got {failure_ratio}")
        if min_calls < 1 or cooldown_s < 0:
            raise ValueError("min_calls must be >= 1 and cooldown_s >= 0")
        self._ratio = failure_ratio
        self._min_calls = min_calls
        self._cooldown = cooldown_s
        self._window = _Window(window_s)
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probe_at: float | None = None  # when the outstanding probe was let through
        self._changes: list[BreakerState] = []  # every state change, until taken

    def take_changes(self) -> list[BreakerState]:
        """State changes since the last call, in order (a probe can fail between two looks)."""
        changes, self._changes = self._changes, []
        return changes

    def _set(self, state: BreakerState) -> None:
        self._state = state
        self._changes.append(state)

    def state(self, now: float) -> BreakerState:
        if self._state is BreakerState.OPEN and now - self._opened_at >= self._cooldown:
            self._set(BreakerState.HALF_OPEN)
            self._probe_at = None
        return self._state

    def allow(self, now: float) -> bool:
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        # One probe at a time; a probe whose result never came back (abandoned job)
        # is given up on after a cooldown so the breaker cannot stay half open forever.
        if self._probe_at is None or now - self._probe_at >= self._cooldown:
            self._probe_at = now
            return True
        return False

    def accepting(self, now: float) -> bool:
        """Whether new work should be fetched: closed, or half open with no probe out yet."""
        state = self.state(now)
        if state is BreakerState.HALF_OPEN:
            return self._probe_at is None or now - self._probe_at >= self._cooldown
        return state is BreakerState.CLOSED

    def record(self, success: bool, now: float) -> None:
        state = self.state(now)
        if state is BreakerState.HALF_OPEN:
            if success:
                self._set(BreakerState.CLOSED)
                self._window.clear()  # the failures that opened it are history
            else:
                self._open(now)
            return
        if state is BreakerState.OPEN:
            return  # late results of jobs started before opening change nothing
        self._window.add(not success, now)
        total, failures = self._window.counts(now)
        if total >= self._min_calls and failures >= self._ratio * total:
            self._open(now)

    def _open(self, now: float) -> None:
        self._set(BreakerState.OPEN)
        self._opened_at = now
        self._probe_at = None


class DlqGuard:
    """Trips when more than max_ratio of the jobs over window_s were dead-lettered
    (given at least min_jobs): a sign of a bad deploy or schema rather than bad jobs."""

    def __init__(self, max_ratio: float, window_s: float, min_jobs: int) -> None:
        if not 0 <= max_ratio < 1:
            raise ValueError(f"max_ratio must be in [0, 1), got {max_ratio}")
        if min_jobs < 1:
            raise ValueError(f"min_jobs must be >= 1, got {min_jobs}")
        self._max_ratio = max_ratio
        self._min_jobs = min_jobs
        self._window = _Window(window_s)

    def record(self, dead_lettered: bool, now: float) -> None:
        self._window.add(dead_lettered, now)

    def tripped(self, now: float) -> bool:
        total, dead = self._window.counts(now)
        return total >= self._min_jobs and dead > self._max_ratio * total


class JobTypeGate:
    """Whether a job of one type may start: its rate limit and circuit breaker together.

    The poll thread asks `try_start` when it dispatches a job; a refused job is deferred and
    the job type's partitions pause meanwhile. Dispatched jobs may wait in the executor's
    queue, so the breaker is asked again (`admit`) by the handler thread just before the
    handler runs: a breaker that opened meanwhile holds them back too.
    """

    def __init__(
        self,
        limiter: RateLimiter | None,
        breaker: CircuitBreaker | None,
        permanent_errors: tuple[str, ...] = (),
    ) -> None:
        self.limiter = limiter
        self.breaker = breaker
        self._permanent = permanent_errors
        self._lock = threading.Lock()  # the breaker is shared with handler threads

    @classmethod
    def for_job_type(cls, cfg: JobTypeSettings) -> JobTypeGate:
        cb = cfg.circuit_breaker
        return cls(
            RateLimiter(cfg.rate_limit) if cfg.rate_limit else None,
            CircuitBreaker(cb.failure_ratio, cb.window_s, cb.min_calls, cb.cooldown_s)
            if cb
            else None,
            cfg.permanent_errors,
        )

    def try_start(self, now: float) -> bool:
        if not self.accepting(now):
            return False
        return self.limiter is None or self.limiter.try_acquire(now)

    def admit(self) -> bool:
        if self.breaker is None:
            return True
        with self._lock:
            return self.breaker.allow(time.monotonic())

    def done(self, error: BaseException | None) -> None:
        """A handler's result, told by the handler thread the moment it ends, so the breaker
        opens before the jobs queued behind it start. Only a sick downstream counts as a
        failure (transient, timeout); a permanent error is the job's own fault."""
        if self.breaker is None or isinstance(error, NotAdmitted):
            return
        if error is not None and category_of(error, self._permanent) not in _DOWNSTREAM:
            return
        with self._lock:
            self.breaker.record(error is None, time.monotonic())

    def accepting(self, now: float) -> bool:
        if self.breaker is None:
            return True
        with self._lock:
            return self.breaker.accepting(now)

    def transitions(self, now: float) -> list[BreakerState]:
        """The breaker's state changes since the last call (for logs and metrics)."""
        if self.breaker is None:
            return []
        with self._lock:
            self.breaker.state(now)  # a due cool-down ends now, not at the next job
            return self.breaker.take_changes()
