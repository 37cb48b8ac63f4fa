"""structlog set-up: JSON lines in production, readable console output on a terminal."""

from __future__ import annotations

import atexit
import io
import logging
import sys
import threading
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
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    out = stream
    if buffered:
        out = _buffered = _LockedBuffer(stream.fileno())
        atexit.register(flush_logs)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=(
            structlog.WriteLoggerFactory(file=out)
            if buffered
            else structlog.PrintLoggerFactory(file=out)
        ),
        cache_logger_on_first_use=True,
    )


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
        with self._lock:
            self._text.flush()

    def isatty(self) -> bool:
        return False


def flush_logs() -> None:
    if _buffered is not None:
        _buffered.flush()


def get_logger(name: str = "jobstream", **bound: Any) -> Any:
    # Lazy: a module-level logger picks up configure_logging even when made before it.
    return structlog.get_logger(name, **bound)
