"""Issue 26 item 19: mistyped environment keys. Before, `JOBSTREAM_KAFKA_BOOTSTRAP_SERVERS`
(one underscore) was silently ignored and the worker used the default cluster, and
`JOBSTREAM_SCHEMA_DIRS=/path` failed with an internal error (it wanted JSON). Now an unknown
`JOBSTREAM_*` variable gets a warning naming the likely intended one (never its value), and
JOBSTREAM_SCHEMA_DIRS takes a path list separated by os.pathsep."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobstream.config import settings as settings_mod
from jobstream.config.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("JOBSTREAM_"):
            monkeypatch.delenv(name)
    # Each warning is given once per process; these tests each want to see theirs.
    monkeypatch.setattr(settings_mod, "_warned", set(), raising=False)
    yield


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "jobstream.settings" and r.levelno == logging.WARNING
    ]


def test_one_underscore_instead_of_two_warns_and_names_the_intended_variable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("JOBSTREAM_KAFKA_BOOTSTRAP_SERVERS", "kafka-9.example:9092")
    with caplog.at_level(logging.WARNING, logger="jobstream.settings"):
        s = load_settings()
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"  # still ignored, but now said
    (msg,) = _warnings(caplog)
    assert "JOBSTREAM_KAFKA_BOOTSTRAP_SERVERS" in msg
    assert "JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS" in msg
    assert "kafka-9.example" not in msg


def test_a_mistyped_section_warns_with_the_nearest_name(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("JOBSTREAM_WORKERS__GROUP_ID", "g")
    with caplog.at_level(logging.WARNING, logger="jobstream.settings"):
        load_settings()
    (msg,) = _warnings(caplog)
    assert "JOBSTREAM_WORKERS__GROUP_ID" in msg
    assert "JOBSTREAM_WORKER__GROUP_ID" in msg


def test_a_warning_is_given_once_per_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("JOBSTREAM_APPP", "x")
    with caplog.at_level(logging.WARNING, logger="jobstream.settings"):
        load_settings()
        load_settings()
    assert len(_warnings(caplog)) == 1


def test_settings_and_jobstreams_own_tool_variables_do_not_warn(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    for name, value in {
        "JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        "JOBSTREAM_kafka__client_id": "x",  # names are case-insensitive
        "JOBSTREAM_KAFKA__EXTRA__LINGER_MS": "5",
        "JOBSTREAM_WORKER__DLQ_GUARD__MAX_RATIO": "0.4",
        "JOBSTREAM_JOBS__ORDERS__TIMEOUT_S": "5",
        "JOBSTREAM_APP": "my.jobs",
        "JOBSTREAM_SCHEMA_DIRS": str(tmp_path),
        "JOBSTREAM_DEBUG": "1",
        "JOBSTREAM_TEST_BOOTSTRAP": "127.0.0.1:9092",
        "JOBSTREAM_CHAOS_SCALE": "short",
        "JOBSTREAM_BENCH_MARKS": "/tmp/m",
        "JOBSTREAM_CACHE": "/tmp/c",
        "JOBSTREAM_FRESH_BROKER": "1",
    }.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="jobstream.settings"):
        load_settings()
    assert _warnings(caplog) == []


def test_schema_dirs_takes_a_path_list(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("JOBSTREAM_SCHEMA_DIRS", f"{a}{os.pathsep}{b}")
    assert load_settings().schema_dirs == (a, b)
    monkeypatch.setenv("JOBSTREAM_SCHEMA_DIRS", str(a))
    assert load_settings().schema_dirs == (a,)


def test_schema_dirs_of_the_wrong_kind_say_what_is_expected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("schema_dirs: 5\n")
    monkeypatch.setenv("JOBSTREAM_CONFIG", str(path))
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "schema_dirs" in str(info.value)
    assert repr(os.pathsep) in str(info.value)
