"""What a handler may raise, and the classification of every failure into a category."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from enum import IntEnum

from jobstream.consumers.runtime.types import Category
from jobstream.schemas import wire


class PermanentError(Exception):
    """Raise from a handler when retrying cannot help: the job goes to the DLQ at once."""


class ResultError(PermanentError):
    """A handler's return value cannot be stored as the job's result (not JSON, or over
    `result_max_bytes`): the attempt fails as permanent, naming the problem."""


class RetryAfter(Exception):
    """Raise from a handler to retry no sooner than `seconds` (picks the first tier that long)."""

    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(message or f"retry after {seconds}s")
        self.seconds = float(seconds)


class JobTimeout(Exception):
    """The handler ran past its job type's timeout. `abandoned`: reported while the handler's
    thread still ran (given up after abandon_after_s, or at shutdown)."""

    def __init__(self, message: str = "", *, abandoned: bool = False) -> None:
        super().__init__(message)
        self.abandoned = abandoned


class NotAdmitted(Exception):
    """The job type's circuit breaker held a job back just before it ran: it runs later."""


class ExitCode(IntEnum):
    """Every exit code of `jobstream worker` (docs/troubleshooting.md lists each; a test checks)."""

    STOPPED = 0  # SIGTERM or SIGINT, drained and committed
    ERROR = 1  # settings, job module, HTTP port, brokers, a WorkerError
    FENCED = 3
    DLQ_GUARD = 4
    ASSIGNMENT_MISMATCH = 5
    HANDLER_ENDED_PROCESS = 6  # a handler called os._exit (whatever code it asked for)
    INTERNAL = 70  # a bug in jobstream
    SECOND_SIGNAL = 130  # exited at once


class WorkerError(RuntimeError):
    """The worker cannot go on (missing topics, unreachable broker, lost writes): it stops,
    logging `event` and exiting with `exit_code` (a subclass may name its own)."""

    event: str = "worker_error"
    exit_code: int = ExitCode.ERROR


class DlqGuardTripped(WorkerError):
    """Too many jobs were dead-lettered in a window: stop before the DLQ takes everything."""


EXIT_ASSIGNMENT_MISMATCH = ExitCode.ASSIGNMENT_MISMATCH
EXIT_HANDLER_ENDED_PROCESS = ExitCode.HANDLER_ENDED_PROCESS


class WorkerFenced(WorkerError):
    """Another worker took over this worker's partitions; this one must stop."""

    event, exit_code = "fenced", ExitCode.FENCED


class AssignmentMismatch(WorkerError):
    """The group's members use another assignment strategy than worker.assignment: classic
    members with different strategies cannot share a group, and joining is refused for ever."""

    event, exit_code = "assignment_mismatch", ExitCode.ASSIGNMENT_MISMATCH


@dataclass(frozen=True)
class Failure:
    category: Category
    error_class: str  # the root cause's class, not a wrapper's
    message: str
    stack: str
    retry_after: float | None = None


def root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if nxt is None:
            break
        exc = nxt
    return exc


def _qualname(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def category_of(exc: BaseException, permanent_names: tuple[str, ...] = ()) -> Category:
    root = root_cause(exc)
    if isinstance(exc, JobTimeout) or isinstance(root, JobTimeout):
        return Category.TIMEOUT
    chain = {_qualname(e) for e in (exc, root)} | {type(e).__name__ for e in (exc, root)}
    if isinstance(exc, PermanentError) or isinstance(root, PermanentError):
        return Category.PERMANENT
    if chain & set(permanent_names):
        return Category.PERMANENT
    return Category.TRANSIENT


def classify(exc: BaseException, permanent_names: tuple[str, ...] = ()) -> Failure:
    """Map an exception raised by (or around) a handler to a Failure."""
    root = root_cause(exc)
    category = category_of(exc, permanent_names)
    retry_after = exc.seconds if isinstance(exc, RetryAfter) else None
    stack = "".join(traceback.format_exception(exc))
    return Failure(
        category=category,
        error_class=_qualname(root),
        message=wire.cut(str(root) or type(root).__name__, wire.MAX_MESSAGE_BYTES),
        stack=wire.cut(stack, wire.MAX_STACK_BYTES),
        retry_after=retry_after,
    )


def failure_of(category: Category, error_class: str, message: str) -> Failure:
    """A failure that did not come from an exception (decode errors, unknown job types)."""
    return Failure(category, error_class, wire.cut(message, wire.MAX_MESSAGE_BYTES), "")
