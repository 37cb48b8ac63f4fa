"""Publisher.build: the wire headers of a new job, and the checks that refuse bad ids and
reserved headers before anything is sent. No broker: build never talks to Kafka."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobstream.config.settings import Settings
from jobstream.producers import Publisher, PublishError
from jobstream.schemas import wire

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


@pytest.fixture
def pub() -> Iterator[Publisher]:
    settings = Settings.model_validate(
        {
            # Nothing listens there: build must not need the broker.
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},
            "schema_dirs": [str(SCHEMAS)],
            "jobs": {"test.echo": {"topic": "t.echo"}},
        }
    )
    yield Publisher(settings, producer_config={"log_level": 0})


def test_a_job_carries_every_wire_header(pub: Publisher) -> None:
    before = int(time.time() * 1000)
    topic, job_id, _value, raw = pub.build("test.echo", {"seq": 1}, parent_job_id="p-1")
    h = dict(raw)
    assert topic == "t.echo"
    assert h[wire.JOB_TYPE] == b"test.echo" and h[wire.SCHEMA_VERSION] == b"1"
    assert h[wire.ATTEMPT] == b"1" and h[wire.PRODUCER] == pub.producer_name.encode()
    assert h[wire.JOB_ID] == job_id.encode() and len(job_id) == 32
    assert h[wire.PARENT_JOB_ID] == b"p-1"
    assert before <= int(h[wire.ENQUEUED_AT]) <= int(time.time() * 1000)
    assert wire.trace_id(h[wire.TRACEPARENT]) is not None
    assert len(raw) == len(h), "no header twice"


def test_each_job_gets_its_own_id_trace_and_header_list(pub: Publisher) -> None:
    _, id1, _, h1 = pub.build("test.echo", {"seq": 1})
    _, id2, _, h2 = pub.build("test.echo", {"seq": 2})
    assert id1 != id2
    assert dict(h1)[wire.TRACEPARENT] != dict(h2)[wire.TRACEPARENT]
    h1.append(("x-late", b"1"))  # the cached fixed headers must not be shared lists
    assert "x-late" not in dict(pub.build("test.echo", {"seq": 3})[3])


def test_given_ids_and_trace_are_kept(pub: Publisher) -> None:
    tp = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    _, job_id, _, raw = pub.build("test.echo", {"seq": 1}, job_id="order-7", traceparent=tp)
    assert job_id == "order-7"
    assert dict(raw)[wire.JOB_ID] == b"order-7" and dict(raw)[wire.TRACEPARENT] == tp.encode()
    assert wire.PARENT_JOB_ID not in dict(raw)


def test_user_headers_come_first_and_stay_strings(pub: Publisher) -> None:
    raw = pub.build("test.echo", {"seq": 1}, headers={"x-tenant": "acme"})[3]
    assert raw[0] == ("x-tenant", b"acme")


@pytest.mark.parametrize("name", ["js-attempt", "js-anything", "traceparent"])
def test_reserved_headers_are_refused_by_name(pub: Publisher, name: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}'.*reserved by jobstream"):
        pub.build("test.echo", {"seq": 1}, headers={name: "1"})


@pytest.mark.parametrize("bad", ["", "x" * 201, "tab\there", "new\nline", 42])
@pytest.mark.parametrize("field", ["job_id", "parent_job_id", "traceparent"])
def test_bad_ids_are_refused_by_field(pub: Publisher, field: str, bad: object) -> None:
    if field == "traceparent" and bad == "":
        # An empty inbound traceparent passed on starts a new trace rather than failing a job.
        assert wire.trace_id(
            dict(pub.build("test.echo", {"seq": 1}, traceparent="")[3])[wire.TRACEPARENT]
        )
        return
    with pytest.raises(ValueError, match=f"{field}: must be a printable string"):
        pub.build("test.echo", {"seq": 1}, **{field: bad})


@pytest.mark.parametrize(
    ("bad", "shown"),
    [(b"cust-1", "bytes b'cust-1'"), (42, "int 42"), ("", "''"), ("lone\udc80", "'lone\\udc80'")],
)
def test_a_bad_key_is_a_publish_error_naming_it(pub: Publisher, bad: object, shown: str) -> None:
    """Issue 26 item 16: a bytes or int `key=` ended in `AttributeError: ... has no attribute
    'encode'` from deep inside publish_async, and an empty key silently became the job id.
    Now every bad key is refused while the record is built (before anything is queued), with a
    PublishError that names the argument and what was given."""
    for send in (pub.build, pub.publish_async):
        with pytest.raises(PublishError, match="key: ") as e:
            send("test.echo", {"seq": 1}, key=bad)  # type: ignore[operator]
        assert shown in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("field", ["job_id", "parent_job_id"])
def test_an_empty_id_is_a_publish_error(pub: Publisher, field: str) -> None:
    """Issue 26 item 16: `job_id=""` (what `--job-id ""` passes) raised a bare ValueError, which
    the CLI reported as an internal error (exit 70). It is now a PublishError (still a
    ValueError for callers that catch that) naming the field and the input."""
    with pytest.raises(PublishError, match=f"{field}: must be a printable string.*got ''"):
        pub.publish_async("test.echo", {"seq": 1}, **{field: ""})
    with pytest.raises(ValueError, match=field):
        pub.build("test.echo", {"seq": 1}, **{field: ""})
