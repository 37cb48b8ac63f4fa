"""Runs handlers off the poll thread: threads for sync handlers, one asyncio loop for async ones.

Results come back through a queue the poll thread drains. A sync handler past its timeout
cannot be killed in Python: its thread is abandoned (its late result ignored) and a new thread
takes its slot, so capacity stays at `threads`; abandoned threads are counted.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from consumers.errors import JobTimeout, NotAdmitted


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
    started: float = 0.0
    finished: bool = False
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


Result = tuple[Any, BaseException | None, float]  # (token, error or None, duration_s)


class Executor:
    def __init__(
        self,
        threads: int,
        on_result: Callable[[], None] | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        # alive() False: the process was frozen (SIGSTOP, a VM pause) past the group session, so
        # its partitions may belong to another worker now: start no queued job until the poll
        # thread has caught up; the job comes back as NotAdmitted and the poll thread decides.
        self._alive = alive
        self.results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self._work: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._running: dict[int, Task] = {}  # sync tasks by id(task)
        self._mutex = threading.Lock()
        self._threads: set[threading.Thread] = set()  # a set: asked once per task
        self.abandoned = 0
        self._wake = on_result
        for _ in range(threads):
            self._spawn()
        # At most `threads` async handlers at once too; waiting for a slot is not run time.
        self._async_slots = asyncio.Semaphore(threads)
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self._loop.run_forever, name="js-async", daemon=True
        )
        self._loop_thread.start()

    def _spawn(self) -> None:
        t = threading.Thread(
            target=self._serve, name=f"js-handler-{len(self._threads)}", daemon=True
        )
        self._threads.add(t)
        t.start()

    def submit(self, task: Task) -> None:
        task.started = time.monotonic()
        if task.is_async:
            fut = asyncio.run_coroutine_threadsafe(self._run_async(task), self._loop)
            fut.add_done_callback(lambda _f: None)
        else:
            with self._mutex:
                self._running[id(task)] = task
            self._work.put(task)

    def _finish(self, task: Task, error: BaseException | None) -> None:
        with task.lock:
            if task.finished:
                return  # already reported as timed out
            task.finished = True
        if task.gate is not None:
            task.gate.done(error)
        self.results.put((task.token, error, time.monotonic() - task.started))
        if self._wake:
            self._wake()

    def _serve(self) -> None:
        while True:
            task = self._work.get()
            if task is None:
                return
            if (self._alive is not None and not self._alive()) or (
                task.gate is not None and not task.gate.admit()
            ):
                with self._mutex:
                    self._running.pop(id(task), None)
                self._finish(task, NotAdmitted())
                continue
            task.started = time.monotonic()
            task.thread = threading.current_thread()
            error: BaseException | None = None
            try:
                task.func(*task.args)
            except BaseException as e:  # a handler's failure is data, not a crash
                error = e
            took = time.monotonic() - task.started
            if error is None and took > task.timeout_s:
                # Finished, but late: the same outcome as when the loop had noticed it first
                # (whichever came first must not decide between success and timeout).
                error = JobTimeout(
                    f"handler ran past its timeout of {task.timeout_s}s (done after {took:.2f}s)"
                )
            with self._mutex:
                self._running.pop(id(task), None)
            self._finish(task, error)
            with self._mutex:
                retired = threading.current_thread() not in self._threads
            if retired:
                return  # replaced while stuck past a timeout; the pool already has a new one

    async def _run_async(self, task: Task) -> None:
        async with self._async_slots:
            if (self._alive is not None and not self._alive()) or (
                task.gate is not None and not task.gate.admit()
            ):
                self._finish(task, NotAdmitted())
                return
            task.started = time.monotonic()
            error: BaseException | None = None
            try:
                await asyncio.wait_for(task.func(*task.args), timeout=task.timeout_s)
            except TimeoutError:
                error = JobTimeout(f"handler ran past its timeout of {task.timeout_s}s (cancelled)")
            except BaseException as e:
                error = e
            self._finish(task, error)

    def check_timeouts(self, now: float | None = None) -> None:
        """Report sync tasks past their timeout as failed and replace their threads."""
        now = now or time.monotonic()
        with self._mutex:
            # Only tasks a thread has picked up: one still queued behind busy threads has not
            # started, so its time is not running yet.
            late = [
                t
                for t in self._running.values()
                if t.thread is not None and now - t.started > t.timeout_s
            ]
            for t in late:
                self._running.pop(id(t), None)
        for t in late:
            self.abandoned += 1
            self._finish(
                t, JobTimeout(f"handler ran past its timeout of {t.timeout_s}s (thread abandoned)")
            )
            with self._mutex:
                if t.thread is not None:
                    self._threads.discard(t.thread)
            self._spawn()  # keep capacity: a fresh thread takes the stuck one's slot

    def running(self) -> int:
        with self._mutex:
            return len(self._running)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._work.put(None)
        self._loop.call_soon_threadsafe(self._loop.stop)
