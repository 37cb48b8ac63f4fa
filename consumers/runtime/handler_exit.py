"""Which job a handler thread (or asyncio task) runs, when its run really ends, and the guard
that keeps a handler's os._exit from ending the worker with a code that says nothing (or 0).
Used by consumers/runtime/crashes.py."""

from __future__ import annotations

import contextvars
import json
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn

from jobstream.config.logging import flush_logs
from jobstream.consumers.errors import EXIT_HANDLER_ENDED_PROCESS
from jobstream.consumers.runtime.types import Job

TP = tuple[str, int]

# The job whose handler the current thread (or asyncio task) runs, for the os._exit guard.
RUNNING: contextvars.ContextVar[Job | None] = contextvars.ContextVar(
    "jobstream_running_job", default=None
)


def where(job: Job) -> dict[str, Any]:
    """The fields that name a job in the crash watch's log lines."""
    return {
        "job_id": job.job_id,
        "job_type": job.job_type,
        "topic": job.topic,
        "partition": job.partition,
        "offset": job.offset,
    }


def watched(
    func: Callable[..., Any],
    is_async: bool,
    ended: deque[tuple[TP, int, int]],
    job: Job,
    token: int,
) -> Callable[..., Any]:
    """func, reporting when its run really ends (an abandoned thread's too) and naming its job
    to the os._exit guard."""
    done = (job.tp, job.offset, token)

    if is_async:

        async def run_async(*args: Any) -> Any:
            RUNNING.set(job)
            try:
                return await func(*args)
            finally:
                ended.append(done)

        return run_async

    def run(*args: Any) -> Any:
        reset = RUNNING.set(job)
        try:
            return func(*args)
        finally:
            RUNNING.reset(reset)
            ended.append(done)

    return run


def guard_process_exit(worker_id: str) -> None:
    """os._exit from any thread but the main one (a handler, or a thread it started) ends the
    process with EXIT_HANDLER_ENDED_PROCESS, never 0, and one log line naming the job."""
    real_exit = os._exit

    def guarded(status: int) -> NoReturn:
        if threading.current_thread() is threading.main_thread():
            real_exit(status)
        line = {
            "event": "handler_ended_process",
            "level": "error",
            "worker": worker_id,
            "exit_code_asked": status,
            "exit_code": EXIT_HANDLER_ENDED_PROCESS,
            "thread": threading.current_thread().name,
        }
        job = RUNNING.get()
        if job is not None:
            line.update(where(job))
        try:
            flush_logs()
            os.write(2, (json.dumps(line) + "\n").encode())
        finally:
            real_exit(EXIT_HANDLER_ENDED_PROCESS)

    os._exit = guarded
