"""Issue 27 (publishing from other languages): the wire format had no description but three
source files, so a Java team had to read schemas/wire.py, consumers/runtime/decode.py and
producers/publisher.py before it could publish one job. docs/wire-format.md is now the
normative spec; these tests read its test vectors and tables (tests/wire_vectors.py) and hold
the Python publisher and the worker's decoder to them, so the page and the code cannot part.
No broker: Publisher.build and decode_record never talk to Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobstream.config.settings import Settings
from jobstream.consumers.runtime.decode import decode_record
from jobstream.consumers.runtime.types import Category, Job
from jobstream.producers import Publisher
from jobstream.producers import publisher as publisher_module
from jobstream.schemas import wire
from jobstream.schemas.registry import SchemaRegistry
from tests import wire_vectors as wv

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
REGISTRY = SchemaRegistry.from_dirs([SCHEMAS])
VECTORS = wv.vectors()
NEWEST = REGISTRY.latest(wv.JOB_TYPE).version


def _publisher(registry: SchemaRegistry) -> Publisher:
    settings = Settings.model_validate(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},  # nothing listens there
            "schema_dirs": [str(SCHEMAS)],
            "jobs": {wv.JOB_TYPE: {}},
        }
    )
    return Publisher(settings, registry, producer_config={"log_level": 0})


@pytest.fixture(params=VECTORS, ids=[v["name"] for v in VECTORS])
def vector(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(request.param)


@pytest.fixture
def sent(
    vector: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, bytes | None, bytes | None, wire.HeaderList]]:
    """The record the Python publisher sends for the vector's job (topic, key, value, headers),
    caught at Publisher.send. A v1 vector comes from a publisher that has only v1."""
    h = dict(vector["headers"])
    version = int(h[wire.SCHEMA_VERSION])
    registry = REGISTRY
    if version != NEWEST:
        registry = SchemaRegistry({wv.JOB_TYPE: {version: REGISTRY.get(wv.JOB_TYPE, version)}})
    pub = _publisher(registry)
    pub.producer_name = h[wire.PRODUCER]
    caught: list[Any] = []
    monkeypatch.setattr(pub, "send", lambda *a, **_kw: caught.append(a))
    monkeypatch.setattr(publisher_module, "now_ms", lambda: int(h[wire.ENQUEUED_AT]))
    user = {k: v for k, v in h.items() if not k.startswith("js-") and k != wire.TRACEPARENT}
    job_id = pub.publish_async(
        wv.JOB_TYPE,
        vector["payload"],
        key=vector["key"],
        job_id=h[wire.JOB_ID],
        parent_job_id=h.get(wire.PARENT_JOB_ID),
        headers=user or None,
        traceparent=h[wire.TRACEPARENT],
    )
    assert job_id == h[wire.JOB_ID]
    (record,) = caught
    yield record


def _decode(key: bytes | None, value: bytes | None, headers: wire.HeaderList) -> Job:
    return decode_record(
        "jobs.test.wire", 0, 42, key, value, headers, REGISTRY, {wv.JOB_TYPE}, carries={wv.JOB_TYPE}
    )


def test_python_publisher_sends_exactly_the_vector(sent: Any, vector: dict[str, Any]) -> None:
    topic, key, value, headers = sent
    assert topic == vector["topic"]
    assert key == wv.unhex(vector["key_hex"])
    assert value == wv.unhex(vector["value_hex"])
    # Header order is not significant (the page says so); names and bytes are.
    assert sorted(headers) == sorted(wv.raw_headers(vector))
    assert len({k for k, _ in headers}) == len(headers), "no header twice"


def test_partition_is_javas_murmur2_of_the_key(vector: dict[str, Any]) -> None:
    assert wv.partition_for(wv.unhex(vector["key_hex"]), 6) == vector["partition_of_6"]


def test_murmur2_port_gives_kafkas_own_test_values() -> None:
    """The port in tests/wire_vectors.py against the values of Kafka's UtilsTest, so the
    partitions above are Java's, not only this port's (the Java integration test checks them
    on a real broker too)."""
    for text, expected in [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
        ("customer-42", -542987495),
    ]:
        assert wv.murmur2(text.encode()) == expected, text


def test_worker_decodes_the_vector_as_documented(vector: dict[str, Any]) -> None:
    h = dict(vector["headers"])
    job = _decode(
        wv.unhex(vector["key_hex"]), wv.unhex(vector["value_hex"]), wv.raw_headers(vector)
    )
    assert job.failure is None, job.failure
    assert job.payload == vector["decoded"]
    assert job.job_id == h[wire.JOB_ID] and job.job_type == wv.JOB_TYPE
    assert job.version == int(h[wire.SCHEMA_VERSION]) and job.attempt == 1
    assert job.enqueued_at_ms == int(h[wire.ENQUEUED_AT])
    assert job.headers.get(wire.PARENT_JOB_ID) == h.get(wire.PARENT_JOB_ID)


def _good() -> tuple[wv.Record, dict[str, Any], dict[str, Any]]:
    v = VECTORS[0]
    assert dict(v["headers"])[wire.SCHEMA_VERSION] == str(NEWEST)
    record = (wv.unhex(v["key_hex"]), wv.unhex(v["value_hex"]), wv.raw_headers(v))
    return record, REGISTRY.latest(wv.JOB_TYPE).raw, v["payload"]


def test_the_header_levels_are_what_the_decoder_requires() -> None:
    """A MUST header missing is a decode failure; a SHOULD or MAY header missing is not."""
    (key, value, headers), _, _ = _good()
    levels = wv.header_levels()
    assert set(levels.values()) == {"MUST", "SHOULD", "MAY"}
    for name, level in levels.items():
        job = _decode(key, value, [(k, v) for k, v in headers if k != name])
        if level == "MUST":
            assert job.failure is not None and job.failure.category is Category.DECODE, name
            assert f"missing header {name}" in job.failure.message
        else:
            assert job.failure is None, (name, job.failure)


def test_every_header_of_the_code_is_on_the_page() -> None:
    in_code = {v for k, v in vars(wire).items() if k.isupper() and isinstance(v, str)}
    on_page = set(wv.header_levels()) | set(wv.worker_headers())
    assert in_code == on_page


def test_each_malformed_kind_gets_its_documented_category() -> None:
    good, schema, payload = _good()
    kinds = wv.malformed_kinds()
    assert set(kinds) == set(wv.MALFORMED), "the page and the builders list the same kinds"
    for kind, (category, fragments) in kinds.items():
        job = _decode(*wv.malformed(kind, good, schema, payload, NEWEST))
        assert job.failure is not None, f"{kind} was accepted: {job.payload}"
        assert job.failure.category.value == category, (kind, job.failure)
        assert any(f in job.failure.message for f in fragments), (kind, job.failure.message)


def test_the_first_fault_in_the_documented_order_wins() -> None:
    """An unknown job type without a schema version is decode, not unknown_job_type."""
    (key, value, headers), _, _ = _good()
    bad = [(k, v) for k, v in headers if k not in (wire.JOB_TYPE, wire.SCHEMA_VERSION)]
    job = _decode(key, value, [*bad, (wire.JOB_TYPE, b"no.such.job.type")])
    assert job.failure is not None and job.failure.category is Category.DECODE
    assert "js-schema-version" in job.failure.message
