"""Hooks: one small interface for what runs alongside every job. The circuit breaker and rate
limit, the DLQ guard, metrics, lifecycle logging and tracing are hooks in a default list
(consumers/runtime/hook_defaults.py); a service adds its own with `add_hook` in its job module
(docs/hooks.md). A hook overrides only the points it needs: the loop calls a point only on the
hooks that override it, so an unused point costs nothing per job."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from jobstream.consumers.errors import Failure
from jobstream.consumers.runtime.types import TP, Category, Job, Outcome


class Verdict(StrEnum):
    """What `before_start` says about a job: run it now, start it later (its partition is
    paused meanwhile), or refuse it (use `Refuse`, which carries the reason)."""

    RUN = "run"
    DEFER = "defer"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Refuse:
    """Refuse a job: it fails without running, with this reason, and goes the way of any
    failure of its category (permanent: the DLQ at once)."""

    reason: str
    category: Category = Category.PERMANENT

    verdict = Verdict.REFUSE


@dataclass(frozen=True, slots=True)
class Finished:
    """What became of one attempt (given to `after_outcome`).

    outcome FAILED comes first for a failed attempt, when its route is decided; RETRIED or
    DEAD_LETTERED follow once the record is written (none follows a retry in place)."""

    job: Job
    job_type: str  # the job's, or its partition's for a record naming another type
    outcome: Outcome
    duration_s: float | None = None  # the handler's run time, None when it did not run
    failure: Failure | None = None
    tier: str | None = None  # the retry tier of RETRIED
    dead: bool = False  # FAILED: it goes to the DLQ
    in_place: bool = False  # FAILED: retried in place (strict ordering), no record written


Handler = Callable[..., Any]


class Hook:
    """Override the points you need; each default does nothing. Hooks run on the poll loop's
    thread (not the handler's), so they must be quick; an exception from a hook stops the
    worker, except where a point says otherwise."""

    def before_start(self, job: Job, now: float) -> Verdict | Refuse:
        """Before a job starts (now: time.monotonic()). The first hook not saying RUN wins."""
        return Verdict.RUN

    def wrap(self, job: Job, func: Handler, is_async: bool) -> Handler:
        """The handler to run for this job (tracing wraps it in a span)."""
        return func

    def on_receive(self, job: Job) -> None:
        """A record was decoded into a job (before its key queue)."""

    def after_start(self, job: Job) -> None:
        """The job was handed to the executor."""

    def before_send(self, job: Job, outcome: Outcome) -> None:
        """Before an outcome's record (SUCCEEDED, RETRIED, DEAD_LETTERED) is produced. Raising
        stops the worker with that record unwritten (the DLQ guard does so)."""

    def after_outcome(self, finished: Finished) -> None:
        """An attempt's outcome (see Finished)."""

    def on_tick(self, now: float) -> None:
        """Every few milliseconds, from the loop (now: time.monotonic())."""

    def on_assign(self, tps: Sequence[TP]) -> None:
        """Partitions were assigned to this worker."""

    def on_revoke(self, tps: Sequence[TP], lost: bool) -> None:
        """Partitions were revoked (after their jobs ended and were committed), or lost
        (lost=True: another worker may own them; nothing of theirs was committed)."""


_registered: list[Hook] = []


def add_hook(hook: Hook) -> Hook:
    """Add a hook to every worker started in this process, after the default hooks. Call it in
    the job module (`jobstream worker --app` imports it before the worker starts)."""
    if not isinstance(hook, Hook):
        raise TypeError(f"add_hook takes a Hook instance, got {type(hook).__name__}")
    _registered.append(hook)
    return hook


def registered() -> list[Hook]:
    return list(_registered)


class Hooks:
    """The hooks of one worker, each point bound to the hooks that override it."""

    def __init__(self, hooks: Sequence[Hook]) -> None:
        self.all = list(hooks)

        def bound(name: str) -> list[Any]:
            base = getattr(Hook, name)
            return [getattr(h, name) for h in self.all if getattr(type(h), name) is not base]

        self._before_start = bound("before_start")
        self._wrap = bound("wrap")
        self._on_receive = bound("on_receive")
        self._after_start = bound("after_start")
        self._before_send = bound("before_send")
        self._after_outcome = bound("after_outcome")
        self._on_tick = bound("on_tick")
        self._on_assign = bound("on_assign")
        self._on_revoke = bound("on_revoke")

    def find(self, kind: type[Any]) -> Any:
        return next((h for h in self.all if isinstance(h, kind)), None)

    def before_start(self, job: Job, now: float) -> Verdict | Refuse:
        for point in self._before_start:
            verdict = point(job, now)
            if verdict is not Verdict.RUN:
                return verdict  # type: ignore[no-any-return]
        return Verdict.RUN

    def wrap(self, job: Job, func: Handler, is_async: bool) -> Handler:
        for point in self._wrap:
            func = point(job, func, is_async)
        return func

    def on_receive(self, job: Job) -> None:
        for point in self._on_receive:
            point(job)

    def after_start(self, job: Job) -> None:
        for point in self._after_start:
            point(job)

    def before_send(self, job: Job, outcome: Outcome) -> None:
        for point in self._before_send:
            point(job, outcome)

    def after_outcome(self, finished: Finished) -> None:
        for point in self._after_outcome:
            point(finished)

    def on_tick(self, now: float) -> None:
        for point in self._on_tick:
            point(now)

    def on_assign(self, tps: Sequence[TP]) -> None:
        for point in self._on_assign:
            point(tps)

    def on_revoke(self, tps: Sequence[TP], lost: bool = False) -> None:
        for point in self._on_revoke:
            point(tps, lost)
