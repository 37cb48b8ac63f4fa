"""structlog set-up: JSON lines in production, readable console output on a terminal."""

from __future__ import annotations

import atexit
import io
import json
import logging
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any

import structlog

from config.settings import LogSettings

_buffered: Any = None  # the worker's buffered log stream, flushed by flush_logs()


def configure_logging(log: LogSettings, stream: Any = None, buffered: bool = False) -> None:
    """`buffered`: for the worker's hot path, where one write and flush per log line was half
    of the per-job CPU; the poll loop calls flush_logs() every iteration instead."""
    global _buffered
    stream = stream or sys.stderr
    level = logging.getLevelName(log.level)
    use_console = log.format == "console" or (log.format == "auto" and stream.isatty())
    processors: list[Any] = (
        [
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(),
        ]
        if use_console
        else [json_line]
    )
    out = stream
    if buffered:
        out = _buffered = _LockedBuffer(stream.fileno())
        atexit.register(flush_logs)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=(
            structlog.WriteLoggerFactory(file=out)
            if buffered
            else structlog.PrintLoggerFactory(file=out)
        ),
        cache_logger_on_first_use=True,
    )


_encode = json.JSONEncoder(default=repr).encode
_second: tuple[int, str] = (0, "")


def json_line(logger: Any, level: str, event: MutableMapping[str, Any]) -> str:
    """merge_contextvars + add_log_level + an ISO UTC TimeStamper + format_exc_info +
    JSONRenderer as one processor, with the date part made once a second: the chain was
    11 us of the worker's three lines per job, this is about 8."""
    global _second
    event = structlog.contextvars.merge_contextvars(logger, level, event)
    event["level"] = level
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    event["timestamp"] = f"{_second[1]}.{int((now - whole) * 1e6):06d}Z"
    if "exc_info" in event:
        event = structlog.processors.format_exc_info(logger, level, event)
    return _encode(event)


class _LockedBuffer:
    """A buffered text stream on a file descriptor that handler threads may write to while the
    poll thread flushes it."""

    def __init__(self, fd: int) -> None:
        raw = open(fd, "wb", buffering=1 << 16, closefd=False)  # noqa: SIM115
        self._text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            return self._text.write(text)

    def flush(self) -> None:
        """Nothing: structlog's WriteLogger flushes after every line, which made each line a
        write(2) of its own (a tenth of the worker's CPU at half its maximum rate)."""

    def drain(self) -> None:
        with self._lock:
            self._text.flush()

    def isatty(self) -> bool:
        return False


def flush_logs() -> None:
    if _buffered is not None:
        _buffered.drain()


def get_logger(name: str = "jobstream", **bound: Any) -> Any:
    # Lazy: a module-level logger picks up configure_logging even when made before it.
    return structlog.get_logger(name, **bound)
