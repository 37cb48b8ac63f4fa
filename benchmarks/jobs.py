"""Benchmark job module, loaded by worker subprocesses: `jobstream worker --app benchmarks.jobs`.

- bench.noop: does nothing (worker overhead).
- bench.sleep: sleeps JOBSTREAM_BENCH_SLEEP_MS (default 20) milliseconds (I/O-bound work).
- bench.retry: raises RetryAfter(delay_s) on its first attempt; on the retry it appends its
  lateness against js-not-before to the file named by JOBSTREAM_BENCH_SINK.

Every handler notes, once per process, the wall time of its first run in the file named by
JOBSTREAM_BENCH_MARKS ("<pid> <time>" lines): throughput is measured from the first handler
run to all offsets committed, and that mark costs one `is None` check per job.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from jobstream import JobContext, RetryAfter, job
from jobstream.schemas import wire

_MARKS = os.environ.get("JOBSTREAM_BENCH_MARKS")
_SINK = os.environ.get("JOBSTREAM_BENCH_SINK", os.devnull)
_SLEEP_S = int(os.environ.get("JOBSTREAM_BENCH_SLEEP_MS", "20")) / 1000

_first_run: float | None = None
_mark_lock = threading.Lock()


def _mark() -> None:
    global _first_run
    with _mark_lock:
        if _first_run is not None:
            return
        _first_run = time.time()
    if _MARKS:
        _append(_MARKS, f"{os.getpid()} {_first_run:.6f}\n")


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one short write: atomic between processes
    finally:
        os.close(fd)


@job("bench.noop")
def noop(payload: dict[str, Any], ctx: JobContext) -> None:
    if _first_run is None:
        _mark()


@job("bench.sleep")
def sleep(payload: dict[str, Any], ctx: JobContext) -> None:
    if _first_run is None:
        _mark()
    time.sleep(_SLEEP_S)


@job("bench.retry")
def retry(payload: dict[str, Any], ctx: JobContext) -> None:
    started_ms = time.time() * 1000
    if ctx.attempt == 1:
        raise RetryAfter(float(payload["delay_s"]))
    not_before = int(ctx.headers.get(wire.NOT_BEFORE) or 0)
    _append(
        _SINK,
        f"{ctx.job_id} {payload['delay_s']} {not_before} {started_ms:.3f} {ctx.attempt}\n",
    )
