"""Issue 27: CloudEvents stacks send `ce_*` headers, which no worker read. Now a job type that
accepts them (`jobs.<type>.accept: [jobstream, cloudevents]`) runs CloudEvents records sent by a
plain Kafka producer (no jobstream code in the record's making: the headers and value come from
docs/wire-format.md), keeps the event's id through a real retry tier, and dead-letters every
malformed kind the page lists with the page's category. Real broker, real worker processes."""

from __future__ import annotations

from typing import Any

from jobstream.schemas import cloudevents as ce
from jobstream.schemas import wire
from jobstream.schemas.registry import SchemaRegistry
from tests import wire_cloudevents as wce
from tests import wire_vectors as wv
from tests.support.harness import TEST_SCHEMAS, Stack

ACCEPT = {"accept": ["jobstream", "cloudevents"]}


def _ce_stack(stack_factory: Any, **job: Any) -> Stack:
    stack: Stack = stack_factory(job_type=wv.JOB_TYPE, job={**ACCEPT, **job})
    stack.start_worker("--app", "tests.apps.wire")
    return stack


def _dead_letters(stack: Stack, n: int) -> dict[str, Any]:
    dead: dict[str, Any] = {}

    def enough() -> bool:
        for m in stack.read_topic(stack.topics.dlq, timeout=5):
            dead[m.key().decode()] = m
        return len(dead) >= n

    stack.wait_for(enough, 60, f"{n} dead letters")
    return dead


def test_cloudevents_run_and_malformed_ones_are_dead_letters(stack_factory: Any) -> None:
    stack = _ce_stack(stack_factory)
    _, value, headers = wce.good()
    good = []
    for i in range(20):
        h = wv._set(wv._set(headers, ce.ID, f"ce-{i}"), ce.TIME, f"2026-01-01T00:00:{i:02d}Z")
        good.append((None, f"customer-{i}".encode(), value, h))
    both = wce.vectors()[1]
    good.append((None, b"both", wv.unhex(both["value_hex"]), wv.raw_headers(both)))
    kinds = {k: v for k, v in wce.malformed_kinds().items() if k != wce.NOT_ACCEPTED}
    bad = [(None, f"malformed-{k}".encode(), *wce.malformed(k)[1:]) for k in kinds]
    where = stack.produce_raw(good + bad)

    runs = {r["job_id"]: r for r in stack.wait_runs(len(good), timeout=60)}
    for i in range(20):
        run = runs[f"ce-{i}"]
        assert run["key"] == f"customer-{i}" and run["attempt"] == 1
        assert run["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert run["payload"] == wce.vectors()[0]["decoded"]
    run = runs[both["job"]["job_id"]]  # js-* won: its id, its attempt, its (v1) version
    assert run["attempt"] == 2 and run["payload"] == both["decoded"]

    dead = _dead_letters(stack, len(kinds))
    for (kind, (category, fragments)), (partition, offset) in zip(
        kinds.items(), where[len(good):], strict=True
    ):
        m = dead[f"malformed-{kind}"]
        h = wire.decode_headers(m.headers())
        assert h[wire.ERROR_CATEGORY] == category, (kind, h[wire.ERROR_MESSAGE])
        assert any(f in h[wire.ERROR_MESSAGE] for f in fragments), (kind, h[wire.ERROR_MESSAGE])
        assert (int(h[wire.ORIGIN_PARTITION]), int(h[wire.ORIGIN_OFFSET])) == (partition, offset)
        sent = wce.malformed(kind)[2]
        kept = [(k, v) for k, v in m.headers() if k not in wire.FAILURE_HEADERS]
        assert sorted(kept) == sorted(sent), f"{kind}: the dead letter keeps the record's headers"
    assert len(stack.runs()) == len(good), "no malformed record ran"


def test_a_cloudevent_without_the_setting_is_a_dead_letter_naming_it(stack_factory: Any) -> None:
    stack: Stack = stack_factory(job_type=wv.JOB_TYPE)  # accept: the default [jobstream]
    stack.start_worker("--app", "tests.apps.wire")
    _, value, headers = wce.malformed(wce.NOT_ACCEPTED)
    stack.produce_raw([(None, b"malformed-" + wce.NOT_ACCEPTED.encode(), value, headers)])
    category, fragments = wce.malformed_kinds()[wce.NOT_ACCEPTED]
    (m,) = _dead_letters(stack, 1).values()
    h = wire.decode_headers(m.headers())
    assert h[wire.ERROR_CATEGORY] == category
    assert any(f in h[wire.ERROR_MESSAGE] for f in fragments), h[wire.ERROR_MESSAGE]
    assert f"jobs.{wv.JOB_TYPE}.accept" in h[wire.ERROR_MESSAGE]
    assert stack.runs() == []


def test_a_retried_cloudevent_keeps_its_id_through_the_retry_tier(stack_factory: Any) -> None:
    """The retry record carries the ce_* headers (bytes untouched) and the worker's js-attempt:
    the second run is the same job, by the event's id, at attempt 2."""
    stack: Stack = stack_factory(job_type="test.echo", job=ACCEPT)
    stack.start_worker()
    registry = SchemaRegistry.from_dirs([TEST_SCHEMAS])
    version, value = registry.encode("test.echo", {"seq": 1, "behaviour": "fail_until:2"})
    headers = wire.encode_headers(
        {
            ce.SPECVERSION: "1.0",
            ce.ID: "evt-retry-1",
            ce.SOURCE: "/billing",
            ce.TYPE: "test.echo",
            ce.DATASCHEMA: f"urn:jobstream:test.echo:v{version}",
            ce.TIME: "2026-01-01T00:00:00Z",
        }
    )
    stack.produce_raw([(None, b"k-1", value, headers)])
    (run,) = stack.wait_runs(1, timeout=60)
    assert (run["job_id"], run["attempt"]) == ("evt-retry-1", 2)
    assert run["not_before"] is not None  # it came through the retry tier
    assert stack.read_topic(stack.topics.dlq, timeout=3) == []
