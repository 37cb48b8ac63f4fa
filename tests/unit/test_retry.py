import random

import pytest

from jobstream.config.settings import JobTypeSettings
from jobstream.config.topics import job_topics
from jobstream.consumers.errors import Failure
from jobstream.consumers.runtime.outcomes import route_failure
from jobstream.consumers.runtime.retry import (
    Decision,
    backoff_s,
    decide,
    next_tier,
    not_before_ms,
)
from jobstream.consumers.runtime.types import Category, Job
from jobstream.schemas import wire

TIERS = [10.0, 60.0, 600.0]


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 0), (2, 1), (3, 2), (4, 2), (7, 2), (8, None), (9, None)]
)
def test_next_tier_by_attempt(attempt: int, expected: int | None) -> None:
    assert next_tier(TIERS, attempt, max_attempts=8) == expected


def test_next_tier_without_tiers_goes_to_dlq() -> None:
    assert next_tier([], 1, max_attempts=5) is None


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(0.0, 0), (10.0, 0), (11.0, 1), (60.0, 1), (601.0, 2)]
)
def test_next_tier_retry_after(retry_after: float, expected: int) -> None:
    assert next_tier(TIERS, 1, max_attempts=5, retry_after=retry_after) == expected


def test_next_tier_retry_after_still_bounded_by_max_attempts() -> None:
    assert next_tier(TIERS, 5, max_attempts=5, retry_after=1.0) is None


def test_next_tier_rejects_bad_attempt() -> None:
    with pytest.raises(ValueError):
        next_tier(TIERS, 0, max_attempts=5)


def test_not_before_without_jitter() -> None:
    assert not_before_ms(1_000, 10.0, 0.0, random.Random(1)) == 11_000


def test_not_before_jitter_stays_in_range_and_spreads() -> None:
    rng = random.Random(7)
    values = [not_before_ms(0, 10.0, 0.2, rng) for _ in range(500)]
    assert all(8_000 <= v <= 12_000 for v in values)
    assert min(values) < 9_000 and max(values) > 11_000


def test_not_before_never_before_now() -> None:
    assert not_before_ms(5_000, 0.0, 0.5, random.Random(3)) == 5_000


@pytest.mark.parametrize("jitter", [-0.1, 1.0])
def test_not_before_rejects_bad_jitter(jitter: float) -> None:
    with pytest.raises(ValueError):
        not_before_ms(0, 1.0, jitter, random.Random())


def test_backoff() -> None:
    assert [backoff_s(a, 1.0, 60.0) for a in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_s(10_000, 0.5, 30.0) == 30.0  # no overflow


@pytest.mark.parametrize(
    "category", [Category.PERMANENT, Category.DECODE, Category.UNKNOWN_JOB_TYPE]
)
@pytest.mark.parametrize("strict", [False, True])
def test_decide_dlq_at_once(category: Category, strict: bool) -> None:
    assert decide(category, 1, 5, TIERS, strict, None) == Decision("dlq", None, 0.0)


@pytest.mark.parametrize("category", [Category.TRANSIENT, Category.TIMEOUT])
def test_decide_retries_through_tiers_then_dlq(category: Category) -> None:
    got = [decide(category, a, 4, TIERS, False, None) for a in range(1, 5)]
    assert got == [
        Decision("retry", 0, 10.0),
        Decision("retry", 1, 60.0),
        Decision("retry", 2, 600.0),
        Decision("dlq", None, 0.0),
    ]


def test_decide_retry_after_picks_tier() -> None:
    assert decide(Category.TRANSIENT, 1, 5, TIERS, False, 30.0) == Decision("retry", 1, 60.0)


def test_decide_without_tiers_goes_to_dlq() -> None:
    assert decide(Category.TRANSIENT, 1, 5, [], False, None).action == "dlq"


def test_decide_strict_retries_in_place_with_backoff() -> None:
    got = [decide(Category.TIMEOUT, a, 4, TIERS, True, None, 2.0, 5.0) for a in range(1, 5)]
    assert got == [
        Decision("retry_in_place", None, 2.0),
        Decision("retry_in_place", None, 4.0),
        Decision("retry_in_place", None, 5.0),
        Decision("dlq", None, 0.0),
    ]
    assert decide(Category.TRANSIENT, 1, 4, [], True, 7.5) == Decision("retry_in_place", None, 7.5)


def test_category_values_match_header_values() -> None:
    assert [c.value for c in Category] == [
        "transient",
        "timeout",
        "permanent",
        "decode",
        "unknown_job_type",
        "crashed",
    ]
    assert Category("timeout") is Category.TIMEOUT


def _failed_job(partition: int) -> tuple[Job, Failure]:
    job = Job("jobs.x", partition, 7, b"k", b"", {}, [], job_type="x", job_id="j1", attempt=1)
    return job, Failure(Category.TRANSIENT, "ConnectionError", "down", "")


def test_retry_not_before_never_precedes_the_record_ahead_in_its_tier_partition() -> None:
    """A tier is read in order: a due time below the one already written ahead of it would
    only be waited out anyway, so it is raised to match (and the header tells the truth)."""
    cfg = JobTypeSettings(retry_tiers=("60s",))
    topics = job_topics("x", cfg)
    tier_tp = (topics.retries[0], 2)
    rng = random.Random(3)
    dues = []
    floors: dict[tuple[str, int], int] = {}
    for _ in range(200):
        job, failure = _failed_job(2)
        _, out = route_failure(job, failure, cfg, topics, "w", 1_000_000, 0.1, rng, floors)
        assert out is not None
        due = int(dict(out.headers)[wire.NOT_BEFORE])
        assert out.not_before_ms == due
        floors[tier_tp] = due
        dues.append(due)
    assert dues == sorted(dues)
    assert 1_000_000 + 54_000 <= dues[0] <= 1_000_000 + 66_000
    # Without floors the same jitter puts them out of order (what the floor prevents).
    loose = [
        int(
            dict(route_failure(*_failed_job(2), cfg, topics, "w", 1_000_000, 0.1, rng)[1].headers)[
                wire.NOT_BEFORE
            ]
        )  # type: ignore[union-attr]
        for _ in range(50)
    ]
    assert loose != sorted(loose)
    # Another partition's floor does not apply.
    _, other = route_failure(*_failed_job(3), cfg, topics, "w", 1_000_000, 0.0, rng, floors)
    assert other is not None and int(dict(other.headers)[wire.NOT_BEFORE]) == 1_060_000
