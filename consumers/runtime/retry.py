"""Pure retry decisions: which tier, when, or the DLQ. One function per decision."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from jobstream.consumers.runtime.types import Category

# Retrying cannot fix these: the handler said so, or the record itself is unusable.
_DLQ_AT_ONCE = frozenset(
    {Category.PERMANENT, Category.DECODE, Category.UNKNOWN_JOB_TYPE, Category.CRASHED}
)


@dataclass(frozen=True)
class Decision:
    action: Literal["retry", "dlq", "retry_in_place"]
    tier: int | None  # index into the tiers for "retry", else None
    delay_s: float  # tier delay for "retry", backoff for "retry_in_place", 0 for "dlq"


def next_tier(
    tiers: Sequence[float], attempt: int, max_attempts: int, retry_after: float | None = None
) -> int | None:
    """Index of the retry tier after the failed 1-based `attempt`, or None for the DLQ.

    By attempt number (attempt 1 -> tiers[0], ..., then the last tier again); with
    retry_after, the first tier at least that long (else the last tier).
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if not tiers or attempt >= max_attempts:
        return None
    if retry_after is not None:
        for index, delay in enumerate(tiers):
            if delay >= retry_after:
                return index
        return len(tiers) - 1
    return min(attempt - 1, len(tiers) - 1)


def not_before_ms(now_ms: int, delay_s: float, jitter: float, rng: random.Random) -> int:
    """Due time of a retry: now + delay spread uniformly by +/- jitter, never before now.

    Jitter keeps jobs that failed together (an outage) from coming back together.
    """
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    if delay_s < 0:
        raise ValueError(f"delay must not be negative, got {delay_s}")
    spread = delay_s * jitter
    delay_ms = round((delay_s + rng.uniform(-spread, spread)) * 1000)
    return now_ms + max(0, delay_ms)


def backoff_s(attempt: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff for in-place retries: base, 2*base, 4*base, ... up to cap."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # Bounding the exponent keeps 2.0 ** n from overflowing; the cap applies anyway.
    return min(cap_s, base_s * 2.0 ** min(attempt - 1, 1000))


def decide(
    category: Category,
    attempt: int,
    max_attempts: int,
    tiers: Sequence[float],
    strict: bool,
    retry_after: float | None,
    backoff_base_s: float = 1.0,
    backoff_cap_s: float = 60.0,
) -> Decision:
    """What to do with a job whose 1-based `attempt` just failed.

    strict ordering has no retry topics: the job is retried in place (its partition
    paused) with backoff; retry_after, when given, replaces the backoff.
    """
    dlq = Decision("dlq", None, 0.0)
    if category in _DLQ_AT_ONCE or attempt >= max_attempts:
        return dlq
    if strict:
        delay = (
            retry_after
            if retry_after is not None
            else backoff_s(attempt, backoff_base_s, backoff_cap_s)
        )
        return Decision("retry_in_place", None, delay)
    tier = next_tier(tiers, attempt, max_attempts, retry_after)
    if tier is None:  # no tiers configured: nowhere to retry
        return dlq
    return Decision("retry", tier, float(tiers[tier]))
