"""Ctrl-C and SIGTERM for long CLI operations (dlq replay, dlq export): stop at once, but
never inside a step that must finish, and always finish the wrap-up (wait for the sends,
save progress, write the audit record), however often the signal comes.

`raising()` (the CLI, main thread only) turns SIGINT and SIGTERM into `Interrupted`;
`held()` (the operation) marks a step a signal must not cut in two: a signal that arrives
then is raised when the step ends, or, during the wrap-up, only noted. Outside `raising()`
(a Python caller, another thread) both are no-ops and Ctrl-C stays KeyboardInterrupt.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """Stopped by a signal. A BaseException like KeyboardInterrupt, so `except Exception`
    cleanup code does not swallow it. `result` is what the operation did until then."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.result: Any = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def signal_name(exc: BaseException) -> str | None:
    """The signal an operation was stopped by, None when it was not interrupted."""
    if isinstance(exc, Interrupted):
        return exc.name
    return "SIGINT" if isinstance(exc, KeyboardInterrupt) else None


class _State:
    active = False  # inside raising()
    depth = 0  # held() nesting
    pending: int | None = None  # a signal that came during a held step
    finishing = False  # wrapping up (after a signal or not): signals are only noted


_state = _State()


def _notice(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr gone (a closed pipe): the exit code still tells


def _stop(signum: int) -> Interrupted:
    _state.finishing = True
    _notice(f"interrupted by {signal.Signals(signum).name}: finishing (waiting for sends, "
            "saving progress, writing the audit record)")
    return Interrupted(signum)


def _handler(signum: int, _frame: FrameType | None) -> None:
    if _state.finishing:
        _notice(f"{signal.Signals(signum).name}: still finishing (waiting for sends, saving "
                "progress, writing the audit record); please wait")
    elif _state.depth:
        if _state.pending is None:
            _notice(f"{signal.Signals(signum).name}: stopping after the current step")
        _state.pending = signum
    else:
        raise _stop(signum)


@contextmanager
def raising() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted in the main thread while inside."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in _SIGNALS}
    _state.active, _state.depth, _state.pending, _state.finishing = True, 0, None, False
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _state.active = False


@contextmanager
def held() -> Iterator[None]:
    """A step a signal must not cut in two: a signal during it is raised when it ends."""
    if not _state.active:
        yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
    if _state.depth == 0 and _state.pending is not None and not _state.finishing:
        signum, _state.pending = _state.pending, None
        raise _stop(signum)


def wrap_up() -> None:
    """The operation is finishing (sends, progress, audit record): from now on a signal is
    only noted, so a second Ctrl-C cannot lose the audit record."""
    if _state.active:
        _state.finishing = True
