"""Foundation against the real broker: publish and read back, schema evolution, rejections,
`schemas check`, and the local broker commands."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import fastavro
import pytest

from jobstream.producers import PayloadTooLarge
from jobstream.schemas import PayloadError, SchemaRegistry, UnknownJobType, wire
from tests.support.harness import ROOT, Stack


def test_publish_and_read_back_with_all_headers(stack_factory) -> None:
    stack: Stack = stack_factory()
    with stack.publisher() as pub:
        jid = pub.publish(
            stack.job_type,
            {"seq": 7, "behaviour": "ok"},
            key="cust-1",
            parent_job_id="parent-1",
            headers={"x-tenant": "acme"},
        )
        keyless = pub.publish(stack.job_type, {"seq": 8})
    msgs = {dict(m.headers())[wire.JOB_ID].decode(): m for m in stack.read_topic(stack.topics.main)}
    m = msgs[jid]
    h = {k: v.decode() for k, v in m.headers()}
    assert m.key() == b"cust-1"
    assert h[wire.JOB_TYPE] == stack.job_type and h[wire.SCHEMA_VERSION] == "1"
    assert h[wire.PARENT_JOB_ID] == "parent-1" and h[wire.ATTEMPT] == "1"
    assert h["x-tenant"] == "acme" and h[wire.PRODUCER]
    assert int(h[wire.ENQUEUED_AT]) > 1_700_000_000_000
    assert len(h[wire.TRACEPARENT].split("-")) == 4
    reg = SchemaRegistry.from_dirs(stack.settings.schema_dirs)
    assert reg.decode(stack.job_type, 1, m.value()) == {"seq": 7, "behaviour": "ok", "secret": ""}
    assert msgs[keyless].key() == keyless.encode()  # no key: the job id is the key


def test_v1_data_reads_as_v2(bootstrap: str) -> None:
    reg = SchemaRegistry.from_dirs([ROOT / "examples" / "schemas"])
    v1 = reg.get("orders.confirmation", 1)
    buf = io.BytesIO()
    fastavro.schemaless_writer(
        buf, v1.parsed, {"order_id": "o-1", "email": "a@b.c", "total_cents": 5}
    )
    out = reg.decode("orders.confirmation", 1, buf.getvalue())
    assert out == {
        "order_id": "o-1",
        "email": "a@b.c",
        "total_cents": 5,
        "currency": "EUR",
        "locale": None,
    }


def test_invalid_payloads_rejected_and_nothing_sent(stack_factory) -> None:
    stack: Stack = stack_factory()
    with stack.publisher() as pub:
        with pytest.raises(PayloadError, match=r"payload\.seq: expected long, got str"):
            pub.publish(stack.job_type, {"seq": "x"})
        with pytest.raises(PayloadError, match=r"payload\.bogus: unknown field"):
            pub.publish(stack.job_type, {"seq": 1, "bogus": 1})
        with pytest.raises(PayloadError, match=r"payload\.seq: required field is missing"):
            pub.publish(stack.job_type, {})
        with pytest.raises(UnknownJobType, match="nope"):
            pub.publish("nope", {"seq": 1})
        with pytest.raises(PayloadTooLarge, match="at most"):
            pub.publish(stack.job_type, {"seq": 1, "secret": "x" * 2_000_000})
    assert stack.end_offsets(stack.topics.main) == {p: 0 for p in range(6)}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobstream", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        timeout=120,
    )


def test_schemas_check_catches_incompatible_version(tmp_path: Path) -> None:
    d = tmp_path / "schemas" / "shop.refund"
    d.mkdir(parents=True)
    base = {
        "type": "record",
        "name": "Refund",
        "doc": "d",
        "fields": [{"name": "order_id", "type": "string", "doc": "d"}],
    }
    (d / "v1.avsc").write_text(json.dumps(base))
    ok = _cli(
        "schemas", "check", env={"JOBSTREAM_SCHEMA_DIRS": json.dumps([str(tmp_path / "schemas")])}
    )
    assert ok.returncode == 0, ok.stderr
    bad = {**base, "fields": [*base["fields"], {"name": "amount", "type": "long", "doc": "d"}]}
    (d / "v2.avsc").write_text(json.dumps(bad))
    res = _cli(
        "schemas", "check", env={"JOBSTREAM_SCHEMA_DIRS": json.dumps([str(tmp_path / "schemas")])}
    )
    assert res.returncode == 1
    assert "shop.refund v1 -> v2" in res.stderr and "amount" in res.stderr
    assert "Traceback" not in res.stderr


def test_schemas_check_compares_every_older_version(tmp_path: Path) -> None:
    """Issue 26 item 3: a rename (T -> T2) and a default dropped two versions later passed
    `jobstream schemas check`, and old jobs then became decode dead letters. The command now
    fails on both, one line each naming the job type, the versions and the field or names."""
    def version(d: Path, n: int, name: str, *fields: dict[str, object]) -> None:
        d.mkdir(parents=True, exist_ok=True)
        raw = {"type": "record", "name": name, "doc": "d",
               "fields": [{"name": "a", "type": "string", "doc": "d"}, *fields]}
        (d / f"v{n}.avsc").write_text(json.dumps(raw))

    b = {"name": "b", "type": "long", "doc": "d"}
    version(tmp_path / "s" / "shop.steps", 1, "T")
    version(tmp_path / "s" / "shop.steps", 2, "T", {**b, "default": 0})
    version(tmp_path / "s" / "shop.steps", 3, "T", b)
    version(tmp_path / "s" / "shop.renamed", 1, "T")
    version(tmp_path / "s" / "shop.renamed", 2, "T2")
    res = _cli("schemas", "check", env={"JOBSTREAM_SCHEMA_DIRS": json.dumps([str(tmp_path / "s")])})
    assert res.returncode == 1, res.stdout + res.stderr
    assert "shop.steps v1 -> v3: field 'b': not in v1's data and no default in v3" in res.stderr
    assert "shop.renamed v1 -> v2: record T of v1 is renamed T2 in v2" in res.stderr
    assert "2 problem(s) found" in res.stderr and "Traceback" not in res.stderr


def test_publish_cli_and_errors(stack_factory) -> None:
    stack: Stack = stack_factory()
    env = stack.env()
    res = _cli("publish", stack.job_type, "--json", '{"seq": 1}', "--key", "k", env=env)
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.strip()) == 32
    bad = _cli("publish", stack.job_type, "--json", '{"seq": "one"}', env=env)
    assert bad.returncode == 1 and "payload.seq" in bad.stderr and "Traceback" not in bad.stderr
    bad_json = _cli("publish", stack.job_type, "--json", "{", env=env)
    assert bad_json.returncode == 1 and "not valid JSON" in bad_json.stderr
    bad_setting = _cli(
        "publish",
        stack.job_type,
        "--json",
        "{}",
        env={**env, "JOBSTREAM_WORKER__MAX_IN_FLIGHT": "lots"},
    )
    assert bad_setting.returncode == 1 and "worker.max_in_flight" in bad_setting.stderr


def test_broker_commands_start_report_stop(tmp_path: Path) -> None:
    env = {"JOBSTREAM_BROKER__PORT": "19392", "JOBSTREAM_BROKER__DATA_DIR": str(tmp_path / "kafka")}
    assert _cli("broker", "status", env=env).returncode == 1
    started = _cli("broker", "start", env=env)
    try:
        assert started.returncode == 0, started.stderr
        assert "127.0.0.1:19392" in started.stdout
        status = _cli("broker", "status", env=env)
        assert status.returncode == 0 and "up at 127.0.0.1:19392" in status.stdout
        again = _cli("broker", "start", env=env)
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        stopped = _cli("broker", "stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert _cli("broker", "status", env=env).returncode == 1
    taken = _cli("broker", "start", env={**env, "JOBSTREAM_BROKER__PORT": "9092"})
    if taken.returncode != 0:  # the suite's broker holds 9092
        assert "already in use" in taken.stderr or "already running" in taken.stdout
    elif "already running" not in taken.stdout:  # 9092 was free (the suite's broker is elsewhere)
        _cli("broker", "stop", env={**env, "JOBSTREAM_BROKER__PORT": "9092"})
