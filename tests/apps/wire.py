"""Test job module for the wire-format job type `test.wire` (docs/wire-format.md): each run
appends one JSON line to JOBSTREAM_TEST_SINK (the fields tests/support/harness.py reads, and the
payload as the handler got it, to see v1 jobs read with v2's defaults)."""

from __future__ import annotations

import os
import time
from typing import Any

from jobstream import JobContext, job
from tests.apps.sinkfile import append


@job("test.wire")
def wire(payload: dict[str, Any], ctx: JobContext) -> None:
    now = time.time()
    append(
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
