"""Runs handlers off the poll thread: threads for sync handlers, one asyncio loop for async ones.

Results come back through a queue the poll thread drains, one per task. Tasks of a kind with a
limit (a job type's `concurrency`) wait here for one of its slots: at most that many run at once.

A sync handler past its timeout cannot be stopped in Python. Its slot goes to a new thread at
once (capacity stays at `threads`), but its result, a timeout, comes only when its thread really
ends: until then the worker holds the job, its key and its offset, so neither its retry nor its
key's next job runs beside it. A thread still running `abandon_after_s` after its timeout is
given up: its job is reported (a timeout marked `abandoned`) while the thread runs on unwatched.

The event loop outlives whatever a handler raises or does to it: any BaseException is its task's
failure, and a loop stopped by a handler is run again. A heartbeat on the loop lets the health
check see a loop that cannot run (blocked by a sync call in an async handler, or gone).
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from jobstream.config.logging import get_logger
from jobstream.consumers.errors import JobTimeout, NotAdmitted
from jobstream.consumers.health import ASYNC_LOOP_BLOCKED, ASYNC_LOOP_STOPPED

HEARTBEAT_S = 0.5  # how often the event loop proves it runs


class Gate(Protocol):
    def admit(self) -> bool: ...  # False: the task ends with NotAdmitted, unrun

    def done(self, error: BaseException | None) -> None: ...


@dataclass
class Task:
    func: Callable[..., Any]
    args: tuple[Any, ...]
    is_async: bool
    timeout_s: float
    token: Any  # handed back with the result (the job)
    gate: Gate | None = None  # asked just before running, told the result at once
    kind: str | None = None  # a kind with a limit waits for one of its slots
    abandon_after_s: float = 60.0  # past the timeout, how long its thread is waited for
    started: float = 0.0
    overran: float = 0.0  # when its timeout was noticed while its thread ran on
    told_gate: bool = False
    finished: bool = False
    value: Any = None  # what the handler returned (its job's result)
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Limit:
    size: int
    running: int = 0
    waiting: deque[Task] = field(default_factory=deque)


# (token, error or None, duration_s, the handler's return value when it succeeded)
Result = tuple[Any, BaseException | None, float, Any]


async def _shielded(aw: Awaitable[Any], task: Task | None) -> BaseException | None:
    """Await a handler's awaitable; return what it raised (what it returned goes to the task).
    SystemExit or KeyboardInterrupt left to reach asyncio's Task would be raised out of the
    loop and end the loop's thread."""
    try:
        value = await aw
        if task is not None:
            task.value = value
    except asyncio.CancelledError:
        raise  # the timeout cancelling it: wait_for turns it into TimeoutError
    except BaseException as e:
        return e
    return None


async def _within(aw: Awaitable[Any], timeout_s: float, limit_s: float,
                  task: Task | None = None) -> BaseException | None:
    try:
        return await asyncio.wait_for(_shielded(aw, task), timeout=timeout_s)
    except TimeoutError:
        return JobTimeout(f"handler ran past its timeout of {limit_s}s (cancelled)")


class Executor:
    def __init__(
        self,
        threads: int,
        on_result: Callable[[], None] | None = None,
        alive: Callable[[], bool] | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> None:
        # alive() False: the process was frozen (SIGSTOP, a VM pause) past the group session, so
        # its partitions may belong to another worker now: start no queued job until the poll
        # thread has caught up; the job comes back as NotAdmitted and the poll thread decides.
        self._alive = alive
        self.results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self._work: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._running: dict[int, Task] = {}  # sync tasks by id(task)
        self._limits = {kind: _Limit(n) for kind, n in (limits or {}).items()}
        self._mutex = threading.Lock()
        self._threads: set[threading.Thread] = set()  # a set: asked once per task
        self.overruns = 0  # sync handlers noticed past their timeout
        self.abandoned = 0  # ... whose thread was given up while it still ran
        self._wake = on_result
        self._log = get_logger("jobstream.executor")
        for _ in range(threads):
            self._spawn()
        # At most `threads` async handlers at once too; waiting for a slot is not run time.
        self._async_slots = asyncio.Semaphore(threads)
        self._loop = asyncio.new_event_loop()
        self._closing = False
        self._loop_beat = time.monotonic()
        self._loop_thread = threading.Thread(target=self._run_loop, name="js-async", daemon=True)
        self._loop_thread.start()

    def _spawn(self) -> None:
        t = threading.Thread(
            target=self._serve, name=f"js-handler-{len(self._threads)}", daemon=True
        )
        self._threads.add(t)
        t.start()

    # -- submitting --------------------------------------------------------------------------

    def submit(self, task: Task) -> None:
        task.started = time.monotonic()
        limit = self._limits.get(task.kind) if task.kind is not None else None
        if limit is not None:
            with self._mutex:
                if limit.running >= limit.size:
                    limit.waiting.append(task)
                    return
                limit.running += 1
        self._dispatch(task)

    def _dispatch(self, task: Task) -> None:
        if task.is_async:
            fut = asyncio.run_coroutine_threadsafe(self._run_async(task), self._loop)
            fut.add_done_callback(lambda _f: None)
        else:
            with self._mutex:
                self._running[id(task)] = task
            self._work.put(task)

    def withdraw(self, unwanted: Callable[[Any], bool]) -> list[Any]:
        """Remove the tasks still waiting for a slot of their kind whose token is unwanted
        (their partition went): they never ran and no result comes for them."""
        out: list[Task] = []
        with self._mutex:
            for limit in self._limits.values():
                keep = [t for t in limit.waiting if not unwanted(t.token)]
                out += [t for t in limit.waiting if unwanted(t.token)]
                limit.waiting = deque(keep)
        return [t.token for t in out]

    def _finish(self, task: Task, error: BaseException | None) -> None:
        with task.lock:
            if task.finished:
                return  # already reported (given up while its thread ran on)
            task.finished = True
        if task.gate is not None and not task.told_gate:
            task.gate.done(error)
        self._release(task)
        value = task.value if error is None else None
        self.results.put((task.token, error, time.monotonic() - task.started, value))
        if self._wake:
            self._wake()

    def _release(self, task: Task) -> None:
        limit = self._limits.get(task.kind) if task.kind is not None else None
        if limit is None:
            return
        with self._mutex:
            nxt = limit.waiting.popleft() if limit.waiting else None
            if nxt is None:
                limit.running -= 1
        if nxt is not None:  # the slot passes straight to the next task of the kind
            self._dispatch(nxt)

    def _admitted(self, task: Task) -> bool:
        if self._alive is not None and not self._alive():
            return False
        return task.gate is None or task.gate.admit()

    # -- sync handlers -----------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            task = self._work.get()
            if task is None:
                return
            if not self._admitted(task):
                with self._mutex:
                    self._running.pop(id(task), None)
                self._finish(task, NotAdmitted())
                continue
            task.started = time.monotonic()
            task.thread = threading.current_thread()
            error: BaseException | None = None
            try:
                returned = task.func(*task.args)
                if inspect.isawaitable(returned):
                    self._await_returned(task, returned)
                else:
                    task.value = returned
            except BaseException as e:  # a handler's failure is data, not a crash
                error = e
            took = time.monotonic() - task.started
            if took > task.timeout_s and not isinstance(error, JobTimeout):
                # Finished, but late: a timeout whether or not the loop noticed it first (which
                # came first must not decide between success and timeout).
                late = f"; then raised {type(error).__name__}: {error}" if error else ""
                error = JobTimeout(
                    f"handler ran past its timeout of {task.timeout_s}s "
                    f"(done after {took:.2f}s{late})"
                )
            with self._mutex:  # once the task is out, check_timeouts cannot retire us
                self._running.pop(id(task), None)
                retired = task.thread not in self._threads
            self._finish(task, error)
            if retired:
                return  # replaced when it overran; the pool already has a new one

    def _await_returned(self, task: Task, returned: Awaitable[Any]) -> None:
        """A sync handler returned an awaitable (a sync wrapper around an async def, a partial):
        it means that work, so it runs to the end on the event loop within the job's timeout."""
        left = task.timeout_s - (time.monotonic() - task.started)
        fut = asyncio.run_coroutine_threadsafe(
            _within(returned, left, task.timeout_s, task), self._loop
        )
        error = fut.result()
        if error is not None:
            raise error

    def check_timeouts(self, now: float | None = None, give_up: bool = False) -> list[Any]:
        """Notice sync tasks past their timeout: each one's thread gives its slot to a new
        thread and its token is returned (once); its result waits for the thread to end. A
        thread still running abandon_after_s after that (any such thread, with give_up: the
        process is ending, and its threads with it) is given up and its task reported."""
        now = now or time.monotonic()
        with self._mutex:
            # Only tasks a thread has picked up: one still queued behind busy threads has not
            # started, so its time is not running yet.
            started = [t for t in self._running.values() if t.thread is not None]
            late = [t for t in started if not t.overran and now - t.started > t.timeout_s]
            for t in late:
                t.overran = now
                self._threads.discard(t.thread)
            expired = [
                t
                for t in started
                if t.overran and (give_up or now - t.overran >= t.abandon_after_s)
            ]
            for t in expired:
                self._running.pop(id(t), None)
        for t in late:
            self.overruns += 1
            self._spawn()  # keep capacity: a fresh thread takes the stuck one's slot
            if t.gate is not None:  # a breaker hears of a timeout when it happens
                t.told_gate = True
                t.gate.done(JobTimeout(f"handler ran past its timeout of {t.timeout_s}s"))
        for t in expired:
            self.abandoned += 1
            error = JobTimeout(
                f"handler ran past its timeout of {t.timeout_s}s; its thread was still running "
                f"after {now - t.started:.1f}s and was abandoned",
                abandoned=True,
            )
            self._finish(t, error)
        return [t.token for t in late]

    # -- async handlers ----------------------------------------------------------------------

    def _run_loop(self) -> None:
        self._loop.call_soon(self._heartbeat)
        while not self._closing and not self._loop.is_closed():
            try:
                self._loop.run_forever()
            except BaseException as e:  # a handler's callback raised SystemExit or the like
                self._log.error("event_loop_error", error=f"{type(e).__name__}: {e}")
            else:
                if not self._closing:
                    self._log.error("event_loop_stopped", detail="a handler stopped it; run again")

    def _heartbeat(self) -> None:
        self._loop_beat = time.monotonic()
        self._loop.call_later(HEARTBEAT_S, self._heartbeat)

    def loop_problem(self, stall_s: float) -> str | None:
        """Why the event loop of async handlers cannot run them, if it cannot."""
        if not self._loop_thread.is_alive():
            return ASYNC_LOOP_STOPPED
        late = time.monotonic() - self._loop_beat - HEARTBEAT_S
        if late > stall_s:
            return ASYNC_LOOP_BLOCKED.format(seconds=late)
        return None

    async def _run_async(self, task: Task) -> None:
        async with self._async_slots:
            if not self._admitted(task):
                self._finish(task, NotAdmitted())
                return
            task.started = time.monotonic()
            error: BaseException | None
            try:
                error = await _within(task.func(*task.args), task.timeout_s, task.timeout_s,
                                      task)
            except BaseException as e:  # calling it raised, or it raised CancelledError itself
                error = e
            self._finish(task, error)

    def running(self) -> int:
        with self._mutex:
            return len(self._running)

    def shutdown(self) -> None:
        self._closing = True
        for _ in self._threads:
            self._work.put(None)
        self._loop.call_soon_threadsafe(self._loop.stop)
