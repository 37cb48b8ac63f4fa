"""structlog set-up: JSON lines in production, readable console output on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from config.settings import LogSettings


def configure_logging(log: LogSettings, stream: Any = None) -> None:
    stream = stream or sys.stderr
    level = logging.getLevelName(log.level)
    use_console = log.format == "console" or (log.format == "auto" and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str = "jobstream", **bound: Any) -> Any:
    # Lazy: a module-level logger picks up configure_logging even when made before it.
    return structlog.get_logger(name, **bound)
