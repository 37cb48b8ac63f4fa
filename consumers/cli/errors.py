"""How the `jobstream` command line ends: a user mistake as one `error:` line and exit 1 (or
its own code), a usage error as the CLI library words it, anything else as `internal error`
with exit 70 (JOBSTREAM_DEBUG=1 re-raises it for the traceback)."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

import typer
from rich.console import Console

from jobstream.config.settings import SettingsError
from jobstream.consumers.errors import ExitCode

err = Console(stderr=True)


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1 (or `code`)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    raise CliError(message, code)


def user_errors() -> tuple[type[BaseException], ...]:
    from confluent_kafka import KafkaException

    from jobstream.consumers.broker import BrokerError
    from jobstream.consumers.jobs import AppError
    from jobstream.consumers.ops.topic_plan import TopicPlanError
    from jobstream.producers.connection import ConnectionCheckError
    from jobstream.producers.publisher import PayloadTooLarge, PublishError
    from jobstream.schemas.registry import DecodeError, PayloadError, SchemaError, UnknownJobType

    return (
        CliError,
        SettingsError,
        BrokerError,
        ConnectionCheckError,
        AppError,
        TopicPlanError,
        PublishError,
        PayloadTooLarge,
        PayloadError,
        SchemaError,
        UnknownJobType,
        DecodeError,
        KafkaException,
    )


def say_settings_warnings() -> None:
    """Settings warnings (unknown JOBSTREAM_* variables) come before logging is set up: give
    them as `warning:` lines on stderr, like the `error:` lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    logger = logging.getLogger("jobstream.settings")
    logger.addHandler(handler)
    logger.propagate = False


def run_app(app: typer.Typer) -> NoReturn:
    """Run the CLI and exit: 0, a user error's code (one `error:` line), or 70."""
    say_settings_warnings()
    try:
        rc = app(standalone_mode=False)  # returns the exit code instead of exiting
        sys.exit(rc if isinstance(rc, int) else 0)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as e:
        show = getattr(e, "show", None)  # usage errors of the CLI library: already worded well
        if callable(show) and hasattr(e, "exit_code"):
            show()
            sys.exit(e.exit_code)
        if isinstance(e, user_errors()):
            # soft_wrap: one line however long; rich would otherwise break it at 80 columns
            # when stderr is not a terminal (a pod's log, a CI job).
            err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
            sys.exit(getattr(e, "code", 1))
        if os.environ.get("JOBSTREAM_DEBUG"):
            raise
        err.print(
            f"internal error: {type(e).__name__}: {e} (set JOBSTREAM_DEBUG=1 for a traceback)",
            markup=False,
            soft_wrap=True,
        )
        sys.exit(ExitCode.INTERNAL)
