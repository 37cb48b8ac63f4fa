"""decode_record (record -> Job, pure) and the strict Avro decode behind it: what a worker
refuses to run, and what it runs but does not believe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobstream.config.settings import JobTypeSettings
from jobstream.config.topics import job_topics
from jobstream.consumers.runtime.decode import decode_record, topic_carriers
from jobstream.consumers.runtime.types import Category, Job
from jobstream.schemas import wire
from jobstream.schemas.registry import SchemaRegistry

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = SchemaRegistry.from_dirs([ROOT / "tests" / "schemas", ROOT / "examples" / "schemas"])
NOW_MS = 1_790_000_000_000  # 2026-09-21
ORDERS, REPORTS = "orders.confirmation", "reports.generate"
PAYLOADS: dict[str, dict[str, Any]] = {
    ORDERS: {"order_id": "o-1", "email": "a@example.com", "total_cents": 1299},
    REPORTS: {"account_id": "acc-1", "period": "2026-10", "requested_by": "b@example.com"},
    "test.echo": {"seq": 1},
}


def _headers(job_type: str, **extra: str | int) -> list[tuple[str, bytes]]:
    version, _ = REGISTRY.encode(job_type, PAYLOADS[job_type])
    base: dict[str, str | int] = {
        wire.JOB_TYPE: job_type,
        wire.SCHEMA_VERSION: version,
        wire.JOB_ID: "j-1",
        wire.ENQUEUED_AT: NOW_MS - 1000,
    }
    base.update({k.replace("_", "-"): v for k, v in extra.items()})
    return wire.encode_headers(base)


def _decode(
    topic: str,
    job_type: str,
    carries: frozenset[str],
    handled: tuple[str, ...] = (ORDERS, REPORTS, "test.echo"),
    **headers: str | int,
) -> Job:
    _, value = REGISTRY.encode(job_type, PAYLOADS[job_type])
    return decode_record(
        topic, 0, 7, b"k", value, _headers(job_type, **headers), REGISTRY, handled,
        carries=carries, now_ms=NOW_MS,
    )


# -- issue 26 item 26: a job type on another type's topic -------------------------------------


def test_a_job_type_named_on_another_types_topic_is_a_decode_dead_letter() -> None:
    """Issue 26 item 26: a reports.generate job sent to jobs.orders.confirmation ran the
    reports handler, so anyone who could write one job topic could run any handler of the
    worker. Now it is a decode failure (dead-lettered at once) whose message names both."""
    job = _decode("jobs.orders.confirmation", REPORTS, frozenset({ORDERS}))
    assert job.failure is not None
    assert job.failure.category is Category.DECODE
    assert REPORTS in job.failure.message and ORDERS in job.failure.message
    assert "jobs.orders.confirmation" in job.failure.message
    assert job.payload is None  # not decoded as the other type, not runnable


def test_the_topics_own_job_type_and_its_tiers_still_decode() -> None:
    """Issue 26 item 26: the check must not refuse a job on its own main topic or retry tier."""
    topics = {jt: job_topics(jt, JobTypeSettings()) for jt in (ORDERS, REPORTS)}
    carriers = topic_carriers(topics)
    for topic in topics[ORDERS].consumed:
        job = _decode(topic, ORDERS, carriers[topic])
        assert job.failure is None, job.failure
        assert job.payload == {**PAYLOADS[ORDERS], "currency": "EUR", "locale": None}
    assert carriers["jobs.reports.generate"] == frozenset({REPORTS})


def test_a_topic_configured_for_two_job_types_carries_both() -> None:
    """Issue 26 item 26: two job types whose `topic` setting names the same topic are the one
    way a topic is configured to carry several types; both run there, a third does not."""
    shared = JobTypeSettings(topic="jobs.shared")
    topics = {jt: job_topics(jt, shared) for jt in (ORDERS, REPORTS)}
    topics["test.echo"] = job_topics("test.echo", JobTypeSettings())
    carriers = topic_carriers(topics)
    assert carriers["jobs.shared"] == frozenset({ORDERS, REPORTS})
    assert carriers["jobs.shared.retry.1m"] == frozenset({ORDERS, REPORTS})
    for jt in (ORDERS, REPORTS):
        assert _decode("jobs.shared", jt, carriers["jobs.shared"]).failure is None
    echo = _decode("jobs.shared", "test.echo", carriers["jobs.shared"])
    assert echo.failure is not None and echo.failure.category is Category.DECODE


def test_a_type_no_handler_knows_stays_unknown_job_type() -> None:
    """Issue 26 item 26: a job type this worker has no handler for keeps its own category."""
    job = _decode("jobs.orders.confirmation", REPORTS, frozenset({ORDERS}), handled=(ORDERS,))
    assert job.failure is not None and job.failure.category is Category.UNKNOWN_JOB_TYPE


# -- issue 26 item 28: implausible header times -----------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "unit"),
    [
        (wire.ENQUEUED_AT, NOW_MS // 1000, "seconds"),
        (wire.ENQUEUED_AT, NOW_MS * 1000, "microseconds"),
        (wire.NOT_BEFORE, NOW_MS // 1000 + 60, "seconds"),
        (wire.NOT_BEFORE, (NOW_MS + 60_000) * 1000, "microseconds"),
    ],
)
def test_a_header_time_that_is_not_milliseconds_is_ignored_and_flagged(
    header: str, value: int, unit: str
) -> None:
    """Issue 26 item 28: js-enqueued-at in seconds made jobstream_job_latency_seconds_sum
    1.79e9, and a js-not-before in microseconds would pause a retry tier for millennia. Such a
    time is now ignored (the job runs as if the header were absent) and flagged with the
    header's name and value; the job is not refused, as a replay could not repair it."""
    job = _decode("jobs.test.echo", "test.echo", frozenset({"test.echo"}), **{header: value})
    assert job.failure is None
    got = job.enqueued_at_ms if header == wire.ENQUEUED_AT else job.not_before_ms
    assert got == 0
    [warning] = job.header_warnings
    assert header in warning and str(value) in warning, warning


def test_plausible_header_times_are_kept_without_a_flag() -> None:
    """Issue 26 item 28: real millisecond times (a day-old enqueue, a retry due in an hour)
    pass unchanged."""
    job = _decode(
        "jobs.test.echo", "test.echo", frozenset({"test.echo"}),
        **{wire.ENQUEUED_AT: NOW_MS - 86_400_000, wire.NOT_BEFORE: NOW_MS + 3_600_000},
    )
    assert (job.enqueued_at_ms, job.not_before_ms) == (NOW_MS - 86_400_000, NOW_MS + 3_600_000)
    assert job.header_warnings == ()
