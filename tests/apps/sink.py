"""Test job module: every handler run is appended to the file named by JOBSTREAM_TEST_SINK
(one JSON line: job id, key, seq, attempt, pid, time), an idempotent sink the tests audit."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import sys
import time
from typing import Any

from jobstream import JobContext, PermanentError, RetryAfter, job
from tests.apps.sinkfile import append


def _record(payload: dict[str, Any], ctx: JobContext, started: float) -> None:
    append(
        {
            "job_id": ctx.job_id,
            "key": ctx.key,
            "seq": payload["seq"],
            "attempt": ctx.attempt,
            "pid": os.getpid(),
            "start": started,
            "end": time.time(),
            "topic": ctx.topic,
            "trace_id": ctx.trace_id,
            "not_before": ctx.headers.get("js-not-before"),
        }
    )


def _behave(payload: dict[str, Any], ctx: JobContext) -> float:
    b = payload["behaviour"]
    name, _, arg = b.partition(":")
    if name == "fail_until" and ctx.attempt < int(arg):
        raise ConnectionError(f"downstream unavailable (attempt {ctx.attempt})")
    if name == "downstream" and os.path.exists(arg):  # the file is "the downstream is down"
        raise ConnectionError("downstream unavailable")
    if name == "transient" and not os.environ.get("JOBSTREAM_TEST_FIXED"):
        raise ConnectionError("downstream rejects this job until the fix")
    if name == "permanent" and not os.environ.get("JOBSTREAM_TEST_FIXED"):  # "the fix deployed"
        raise PermanentError("bad order")
    if name == "retry_after" and ctx.attempt == 1:
        raise RetryAfter(float(arg))
    if name == "sleep_ms":
        return int(arg) / 1000
    if name == "hang":
        return 3600.0
    if name == "exit":  # sys.exit() in a handler: a job failure, not the worker's end
        sys.exit(int(arg or 0))
    if name == "os_exit":  # takes the worker process down, as os._exit in a library would
        os._exit(int(arg))
    if name == "segv":
        ctypes.string_at(0)
    if name == "log":  # the standard library's logging and print, from inside a handler
        logging.getLogger(__name__).info("handler logged %s", arg)
        print(f"handler printed {arg}")
    if name == "progress":  # two updates; the history keeps the last one per loop pass
        ctx.progress(0.25, "started")
        time.sleep(0.7)
        ctx.progress(0.75, "nearly there")
        time.sleep(0.7)
    return 0.0


def _result(payload: dict[str, Any], ctx: JobContext) -> Any:
    """What a handler returns: its job's result (issue 21)."""
    name, _, arg = payload["behaviour"].partition(":")
    if name == "result":
        return {"seq": payload["seq"], "attempt": ctx.attempt}
    if name == "big_result":  # over result_max_bytes: the attempt fails as permanent
        return "x" * int(arg)
    if name == "bad_result":
        return {"not": {"json", "set"}}
    return None


@job("test.echo")
def echo(payload: dict[str, Any], ctx: JobContext) -> Any:
    started = time.time()
    delay = _behave(payload, ctx)
    if delay:
        time.sleep(delay)
    _record(payload, ctx, started)
    return _result(payload, ctx)


@job("test.aecho")
async def aecho(payload: dict[str, Any], ctx: JobContext) -> Any:
    started = time.time()
    delay = _behave(payload, ctx)
    if delay:
        await asyncio.sleep(delay)
    _record(payload, ctx, started)
    return _result(payload, ctx)
