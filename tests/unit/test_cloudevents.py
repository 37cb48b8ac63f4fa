"""Issue 27: CloudEvents stacks send `ce_*` headers, and a job type may now accept them
(`jobs.<type>.accept`). These tests hold the worker's decoder to the CloudEvents part of
docs/wire-format.md: its vectors, which header wins when both formats are present, and the
category and message of each malformed kind. No broker."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from pydantic import ValidationError

from jobstream.config.jobtypes import HeaderFormat, JobTypeSettings
from jobstream.consumers.context import context_for
from jobstream.consumers.runtime.decode import decode_record
from jobstream.consumers.runtime.types import Category, Job
from jobstream.schemas import cloudevents as ce
from jobstream.schemas import wire
from jobstream.schemas.registry import SchemaRegistry
from tests import wire_cloudevents as wce
from tests import wire_vectors as wv

REGISTRY = SchemaRegistry.from_dirs([wv.ROOT / "tests" / "schemas"])
CARRIES = frozenset({wce.JOB_TYPE})
NOW_MS = 1_767_225_600_000 + 60_000


def _decode(record: wv.Record, *, accepts: dict[str, tuple[str, ...]] | None = None) -> Job:
    key, value, headers = record
    return decode_record(
        f"jobs.{wce.JOB_TYPE}", 0, 5, key, value, headers, REGISTRY, {wce.JOB_TYPE},
        carries=CARRIES, accepts=wce.ACCEPTS if accepts is None else accepts, now_ms=NOW_MS,
    )


@pytest.mark.parametrize("vector", wce.vectors(), ids=lambda v: v["name"])
def test_the_vectors_decode_as_documented(vector: dict[str, Any]) -> None:
    key, value = wv.unhex(vector["key_hex"]), wv.unhex(vector["value_hex"])
    job = _decode((key, value, wv.raw_headers(vector)))
    assert job.failure is None, job.failure
    want = vector["job"]
    assert (job.job_id, job.job_type, job.version, job.attempt, job.enqueued_at_ms) == (
        want["job_id"], want["job_type"], want["version"], want["attempt"], want["enqueued_at_ms"]
    )
    assert job.headers.get(wire.TRACEPARENT) == want["traceparent"]
    assert len(job.header_warnings) == want["warnings"], job.header_warnings
    assert job.payload == vector["decoded"]


def test_the_handler_gets_the_mapped_traceparent_and_the_ce_headers() -> None:
    """ctx.headers are the record's (ce_* included, js-* filled in); the trace comes from
    ce_traceparent. The record's raw headers, which retry and DLQ records carry, are untouched."""
    job = _decode(wce.good())
    ctx = context_for(job, structlog.get_logger())
    assert ctx.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ctx.headers[ce.SOURCE] == "/orders-api"
    assert ctx.job_id == "c1d2e3f4-0001" and ctx.headers[wire.JOB_ID] == "c1d2e3f4-0001"
    assert job.raw_headers == wce.good()[2]


def test_the_header_table_is_the_code() -> None:
    table = wce.header_table()
    assert {k: v for k, v in table.items() if v != "(none)"} == ce.MAPS_TO
    assert {k for k, v in table.items() if v == "(none)"} == {*ce.CHECKED, *ce.NOT_READ}


def test_each_malformed_kind_gets_its_documented_category() -> None:
    kinds = wce.malformed_kinds()
    assert set(kinds) == set(wce.MALFORMED), "the page's kinds and the builders differ"
    for kind, (category, messages) in kinds.items():
        job = _decode(wce.malformed(kind), accepts=wce.accepts_for(kind))
        assert job.failure is not None, kind
        assert job.failure.category is Category(category), (kind, job.failure)
        assert any(m in job.failure.message for m in messages), (kind, job.failure.message)
        assert job.payload is None, kind


def test_without_the_setting_ce_headers_are_plain_headers() -> None:
    """The default `accept: [jobstream]`: a CloudEvent is refused (naming the setting), and a
    jobstream record with a ce_* header of its own runs as before, the header untouched."""
    jobstream_only = wce.PLAIN
    job = _decode(wce.good(), accepts=jobstream_only)
    assert job.failure is not None and job.failure.category is Category.DECODE
    assert f"jobs.{wce.JOB_TYPE}.accept" in job.failure.message
    v = wv.vectors()[0]
    headers = [*wv.raw_headers(v), (ce.TIME, b"yesterday"), (ce.SPECVERSION, b"0.1")]
    job = _decode((None, wv.unhex(v["value_hex"]), headers), accepts=jobstream_only)
    assert job.failure is None, job.failure
    assert job.headers[ce.TIME] == "yesterday" and job.header_warnings == ()


def test_cloudevents_only_refuses_a_jobstream_record() -> None:
    v = wv.vectors()[0]
    record = (None, wv.unhex(v["value_hex"]), wv.raw_headers(v))
    job = _decode(record, accepts={wce.JOB_TYPE: (ce.CLOUDEVENTS,)})
    assert job.failure is not None and job.failure.category is Category.DECODE
    assert "accepts only CloudEvents records" in job.failure.message
    assert _decode(wce.good(), accepts={wce.JOB_TYPE: (ce.CLOUDEVENTS,)}).failure is None


@pytest.mark.parametrize("ce_name", sorted(ce.MAPS_TO))
def test_a_js_header_wins_over_its_ce_header(ce_name: str) -> None:
    """Each mapped pair on its own: the js-* value is used, the ce_* one only warned about."""
    js_name = ce.MAPS_TO[ce_name]
    own = {
        wire.JOB_ID: "js-id-1",
        wire.JOB_TYPE: wce.JOB_TYPE,
        wire.SCHEMA_VERSION: "2",
        wire.ENQUEUED_AT: str(NOW_MS - 5000),
        wire.TRACEPARENT: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }[js_name]
    key, value, headers = wce.good()
    job = _decode((key, value, [*headers, (js_name, own.encode())]))
    assert job.failure is None, job.failure
    got = {
        wire.JOB_ID: job.job_id,
        wire.JOB_TYPE: job.job_type,
        wire.SCHEMA_VERSION: str(job.version),
        wire.ENQUEUED_AT: str(job.enqueued_at_ms),
        wire.TRACEPARENT: job.headers.get(wire.TRACEPARENT),
    }[js_name]
    assert got == own
    # ce_type test.wire equals js-job-type test.wire, and ce_dataschema's v2 equals "2".
    expect_warning = js_name not in (wire.JOB_TYPE, wire.SCHEMA_VERSION)
    assert bool(job.header_warnings) is expect_warning, job.header_warnings
    if expect_warning:
        assert ce_name in job.header_warnings[0] and js_name in job.header_warnings[0]


def test_a_malformed_ce_header_is_refused_even_when_its_js_header_is_fine() -> None:
    key, value, headers = wce.malformed("ce-bad-time")
    job = _decode((key, value, [*headers, (wire.ENQUEUED_AT, str(NOW_MS).encode())]))
    assert job.failure is not None and "ce_time" in job.failure.message


def test_a_retry_record_of_a_cloudevent_keeps_its_attempt() -> None:
    """The worker's retry record keeps the ce_* headers and adds js-attempt and js-not-before:
    decoded again, it is the same job at attempt 2."""
    key, value, headers = wce.good()
    retry = [*headers, (wire.ATTEMPT, b"2"), (wire.NOT_BEFORE, str(NOW_MS + 10_000).encode())]
    job = _decode((key, value, retry))
    assert job.failure is None, job.failure
    assert (job.job_id, job.attempt, job.not_before_ms) == ("c1d2e3f4-0001", 2, NOW_MS + 10_000)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-01-01T00:00:00Z", 1_767_225_600_000),
        ("2026-01-01t00:00:00.5z", 1_767_225_600_500),
        ("2026-01-01T01:00:00.123456789+01:00", 1_767_225_600_123),
        ("2025-12-31T19:00:00.001-05:00", 1_767_225_600_001),
    ],
)
def test_rfc3339_times(text: str, ms: int) -> None:
    assert ce.rfc3339_ms(text) == ms


@pytest.mark.parametrize(
    "text",
    ["2026-13-01T00:00:00Z", "2026-01-01 00:00:00Z", "2026-01-01T00:00:00+0100",
     "\uff12\uff10\uff12\uff16-01-01T00:00:00Z", "2026-01-01T00:00:00Z\n", "",
     "2026-02-30T00:00:00Z"],
)
def test_times_that_are_not_rfc3339_are_decode_faults(text: str) -> None:
    job = _decode(_with(ce.TIME, text))
    assert job.failure is not None and job.failure.category is Category.DECODE
    assert "ce_time" in job.failure.message


def _with(name: str, value: str) -> wv.Record:
    key, val, headers = wce.good()
    return key, val, wv._set(headers, name, value)


@pytest.mark.parametrize(
    "uri",
    ["urn:x:v0", "https://x/test.wire/v2/", "v2x", "https://x/v-2", "https://x/dev2",
     "https://x/2", "https://x/v01", "https://x/v\u0662", "https://x/v2?x=1", "https://x/v2.json"],
)
def test_dataschemas_without_a_version_at_the_end(uri: str) -> None:
    job = _decode(_with(ce.DATASCHEMA, uri))
    assert job.failure is not None and "ce_dataschema" in job.failure.message, uri


@pytest.mark.parametrize(
    "uri",
    ["v2", "https://schemas.example.com/test.wire/v2.avsc", "urn:jobstream:test.wire:v2",
     "test.wire-v2", "test.wire_v2.avsc", "https://registry/subjects/test.wire/versions/2"],
)
def test_dataschemas_that_name_version_2(uri: str) -> None:
    job = _decode(_with(ce.DATASCHEMA, uri))
    assert job.failure is None and job.version == 2, (uri, job.failure)


def test_hostile_bytes_in_ce_headers_are_dead_letters_not_errors() -> None:
    key, value, headers = wce.good()
    for name in (ce.SPECVERSION, ce.ID, ce.TIME, ce.DATASCHEMA, ce.TRACEPARENT, ce.CONTENT_TYPE):
        bad = [(k, v) for k, v in headers if k != name] + [(name, b"\xff\xfe" * 5000)]
        job = _decode((key, value, bad))
        if name == ce.ID:  # any non-empty id is an id
            assert job.failure is None
            continue
        assert job.failure is not None and job.failure.category is Category.DECODE, name
        assert len(job.failure.message) < 600, name


def test_the_accept_setting() -> None:
    assert JobTypeSettings().accept == (HeaderFormat.JOBSTREAM,)
    both = JobTypeSettings.model_validate({"accept": ["jobstream", "cloudevents"]})
    assert ce.CLOUDEVENTS in both.accept and ce.JOBSTREAM in both.accept
    for bad in ([], ["cloudevents", "cloudevents"], ["json"], "cloudevents,jobstream"):
        with pytest.raises(ValidationError):
            JobTypeSettings.model_validate({"accept": bad})
