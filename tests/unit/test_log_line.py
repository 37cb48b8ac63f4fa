"""json_line, the worker's one-step JSON processor, must write what structlog's standard chain
(merge_contextvars, add_log_level, TimeStamper iso utc, format_exc_info, JSONRenderer) writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from jobstream.config.logging import configure_logging, flush_logs, json_line
from jobstream.config.settings import LogSettings

CHAIN = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
    structlog.processors.JSONRenderer(),
]


def _chain(level: str, event: dict[str, Any]) -> str:
    out: Any = event
    for step in CHAIN:
        out = step(None, level, out)
    return str(out)


def _both(level: str, **event: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    ours = json.loads(json_line(None, level, dict(event)))
    theirs = json.loads(_chain(level, dict(event)))
    return ours, theirs


def _when(line: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(line.pop("timestamp").replace("Z", "+00:00"))


class Odd:
    def __repr__(self) -> str:
        return "<odd>"


def test_same_fields_and_values_as_the_chain() -> None:
    structlog.contextvars.bind_contextvars(worker="w-1")
    try:
        ours, theirs = _both(
            "info", event="received", job_id="j", offset=7, parent_job_id=None, odd=Odd()
        )
    finally:
        structlog.contextvars.clear_contextvars()
    assert abs((_when(ours) - _when(theirs)).total_seconds()) < 1
    assert ours == theirs
    assert ours["worker"] == "w-1" and ours["level"] == "info" and ours["odd"] == "<odd>"


def test_timestamp_is_iso_utc_with_microseconds() -> None:
    line = json.loads(json_line(None, "warning", {"event": "x"}))
    text = line["timestamp"]
    assert text.endswith("Z") and len(text) == len("2026-11-24T01:15:20.123456Z")
    assert abs((datetime.now(UTC) - _when(line)).total_seconds()) < 5


def test_an_exception_is_rendered_like_the_chain() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        ours, theirs = _both("error", event="failed", exc_info=True)
    _when(ours), _when(theirs)
    assert ours == theirs
    assert "ValueError: boom" in ours["exception"] and "exc_info" not in ours


def test_buffered_lines_reach_the_file_only_when_the_loop_flushes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's log stream is written once per poll-loop iteration (flush_logs), not once
    per line: structlog flushes its file after every line, so that flush must not write."""
    monkeypatch.setattr("jobstream.config.logging._buffered", None)  # this test's stream, then none
    path = tmp_path / "worker.log"
    with path.open("w") as stream:
        try:
            configure_logging(LogSettings(level="INFO", format="json"), stream, buffered=True)
            log = structlog.get_logger("t")
            log.info("first", n=1)
            log.info("second", n=2)
            assert path.read_text() == ""
            flush_logs()
            lines = [json.loads(x) for x in path.read_text().splitlines()]
            assert [x["event"] for x in lines] == ["first", "second"]
        finally:
            structlog.reset_defaults()
