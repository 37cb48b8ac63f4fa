"""Handler registration: `@job("orders.confirmation")` on sync or async functions."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Handler = Callable[..., Any]


@dataclass(frozen=True)
class JobDef:
    job_type: str
    func: Handler
    is_async: bool


_REGISTRY: dict[str, JobDef] = {}
# Recurring schedules declared with @job(..., schedule=): job type -> the schedule's settings,
# checked when the worker starts (consumers/scheduling/definitions.py), naming the schedule.
_SCHEDULES: dict[str, dict[str, Any]] = {}


class AppError(RuntimeError):
    """The job module cannot be loaded or registers nothing usable."""


def job(job_type: str, *, schedule: str | None = None, timezone: str = "UTC",
        **schedule_options: Any) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of `job_type`. `schedule` (a cron
    expression, read in `timezone`) also fires it on every slot, as a schedule named after the
    job type; `schedule_options` are the other keys of a `schedules.<name>` setting (payload,
    key, catch_up, max_catch_up, enabled)."""
    if not isinstance(job_type, str) or not job_type or any(c.isspace() for c in job_type):
        raise ValueError(f"job type must be a non-empty string without spaces, got {job_type!r}")

    def register(func: Handler) -> Handler:
        prior = _REGISTRY.get(job_type)
        if prior is not None and prior.func is not func:
            raise AppError(
                f"job type {job_type!r} registered twice: {prior.func.__qualname__} and "
                f"{func.__qualname__}"
            )
        _REGISTRY[job_type] = JobDef(job_type, func, inspect.iscoroutinefunction(func))
        if schedule is not None:
            _SCHEDULES[job_type] = {"job_type": job_type, "cron": schedule,
                                    "timezone": timezone, **schedule_options}
        return func

    return register


def registered() -> dict[str, JobDef]:
    return dict(_REGISTRY)


def declared_schedules() -> dict[str, dict[str, Any]]:
    """The schedules declared with @job(..., schedule=), by name (the job type), unchecked."""
    return {name: dict(opts) for name, opts in _SCHEDULES.items()}


def load_app(module: str) -> dict[str, JobDef]:
    """Import the job module (which registers handlers) and return the registry."""
    # The service's package is usually in the working directory, as with `python -m`.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is not None and (module == e.name or module.startswith(e.name + ".")):
            raise AppError(f"cannot import job module {module!r}: {e}") from None
        raise AppError(_import_failure(module, e)) from None  # a dependency of the module
    except (Exception, SystemExit) as e:  # the user's code: show it as theirs, not ours
        raise AppError(_import_failure(module, e)) from None
    if not _REGISTRY:
        raise AppError(f"job module {module!r} registers no @job handlers")
    return registered()


_IMPORTLIB_DIR = os.path.dirname(importlib.__file__)


def _import_failure(module: str, exc: BaseException) -> str:
    """A header naming the module, then the user's traceback from their first frame on."""
    tb = exc.__traceback__
    while tb is not None and (
        tb.tb_frame.f_code.co_filename in (__file__, importlib.__file__)
        or tb.tb_frame.f_code.co_filename.startswith(("<frozen importlib", _IMPORTLIB_DIR))
    ):
        tb = tb.tb_next
    if isinstance(exc, SystemExit):
        head = f"job module {module!r} called sys.exit({exc.code!r}) while being imported"
    else:
        head = f"job module {module!r} failed to import; the error is in the module"
    text = "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()
    return f"{head}:\n{text}"
