"""Test job module for the wire-format job type `test.wire` (docs/wire-format.md): each run
appends one JSON line to JOBSTREAM_TEST_SINK (the fields tests/harness.py reads, and the
payload as the handler got it, to see v1 jobs read with v2's defaults)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from jobstream import JobContext, job

_SINK = os.environ.get("JOBSTREAM_TEST_SINK", "/dev/null")


@job("test.wire")
def wire(payload: dict[str, Any], ctx: JobContext) -> None:
    now = time.time()
    line = json.dumps(
        {
            "job_id": ctx.job_id,
            "key": ctx.key,
            "seq": payload["seq"],
            "attempt": ctx.attempt,
            "pid": os.getpid(),
            "start": now,
            "end": now,
            "topic": ctx.topic,
            "partition": ctx.partition,
            "trace_id": ctx.trace_id,
            "payload": payload,
        }
    )
    fd = os.open(_SINK, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())  # one write: atomic for lines this short
    finally:
        os.close(fd)
