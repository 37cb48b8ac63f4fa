"""Issue 26 item 16: ordinary user mistakes ended in `internal error ...` with exit 70 (a lone
surrogate or deeply nested JSON in `--json`, `--job-id ""`, `--since -99999999d`, the HTTP
port in use, a bad `http_host`). Each now gets one `error:` line naming the input, exit 1.

The CLI cases run with the bootstrap pointing at a closed port: these are local checks and
must come before any connection attempt (or the answer would be `cannot connect`)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from jobstream.consumers.ops import dlq
from tests.support.harness import free_port, run_cli

PAYLOAD = {"order_id": "o-1", "email": "a@example.com", "total_cents": 100}


@pytest.fixture
def env() -> dict[str, str]:
    return {"JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def test_a_lone_surrogate_escape_in_json_names_the_field(env: dict[str, str]) -> None:
    text = json.dumps({**PAYLOAD, "order_id": "\ud800"})  # json.dumps writes it as \ud800
    proc = run_cli("publish", "orders.confirmation", "--json", text, env=env)
    line = _one_error_line(proc.stderr)
    assert proc.returncode == 1
    assert "--json" in line and "order_id" in line and "surrogate" in line


def test_bytes_that_are_not_utf8_in_json_name_the_field(env: dict[str, str]) -> None:
    raw = b'{"order_id": "\xff", "email": "a@example.com", "total_cents": 1}'
    proc = run_cli("publish", "orders.confirmation", "--json", raw, env=env)
    line = _one_error_line(proc.stderr)
    assert proc.returncode == 1
    assert "--json" in line and "order_id" in line


def test_deeply_nested_json_is_refused_with_one_line(env: dict[str, str]) -> None:
    proc = run_cli("publish", "orders.confirmation", "--json", "[" * 5000 + "]" * 5000, env=env)
    line = _one_error_line(proc.stderr)
    assert proc.returncode == 1
    assert "--json" in line and "nested" in line


@pytest.mark.parametrize("option", ["--job-id", "--parent-job-id"])
def test_an_empty_job_id_names_the_option(env: dict[str, str], option: str) -> None:
    proc = run_cli(
        "publish", "orders.confirmation", "--json", json.dumps(PAYLOAD), option, "", env=env
    )
    line = _one_error_line(proc.stderr)
    assert proc.returncode == 1
    assert option in line


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_the_http_port_in_use_names_the_port_and_the_setting(
    env: dict[str, str], taken_port: int
) -> None:
    env["JOBSTREAM_WORKER__HTTP_PORT"] = str(taken_port)
    proc = run_cli("worker", "--app", "tests.apps.sink", env=env)
    line = _one_error_line(proc.stderr)
    assert proc.returncode == 1
    assert str(taken_port) in line
    assert "worker.http_port" in line and "JOBSTREAM_WORKER__HTTP_PORT" in line


@pytest.mark.parametrize("host", ["192.0.2.1", "no such host"])
def test_a_bad_http_host_names_the_host_and_the_setting(env: dict[str, str], host: str) -> None:
    env["JOBSTREAM_WORKER__HTTP_HOST"] = host  # not this machine's / not a name at all
    env["JOBSTREAM_WORKER__HTTP_PORT"] = str(free_port())
    proc = run_cli("worker", "--app", "tests.apps.sink", env=env)
    line = _one_error_line(proc.stderr)
    assert proc.returncode == 1
    assert repr(host) in line
    assert "worker.http_host" in line and "JOBSTREAM_WORKER__HTTP_HOST" in line


@pytest.mark.parametrize(
    "text", ["-99999999d", "99999999d", "-1e300s", "0001-01-01T00:00:00+14:00"]
)
def test_a_time_beyond_the_calendar_is_a_dlq_error_naming_it(text: str) -> None:
    """`dlq list --since -99999999d` died with OverflowError (exit 70)."""
    with pytest.raises(dlq.DlqError) as info:
        dlq.parse_time(text, datetime(2026, 1, 1, tzinfo=UTC))
    assert repr(text) in str(info.value)


def test_an_empty_job_id_filter_is_refused() -> None:
    """`dlq list --job-id ""` matched nothing, silently: no job has an empty id."""
    with pytest.raises(dlq.DlqError) as info:
        dlq.Filters(job_id="")
    assert "job id" in str(info.value)
