"""Test job module for batches (tests/integration/test_batches.py, tests/chaos): test.batch
records every run to the sink (with the counts a callback got) and its behaviour says what a
member does:

- `ok` succeeds (`sleep_ms:N` after N ms); `permanent` is dead-lettered at once, until
  JOBSTREAM_TEST_FIXED is set;
- `nest:N` opens a nested batch of N `ok` members (its callback: `callback`, seq + 100000);
- `callback` is a batch's callback (on_complete or on_success).
"""

from __future__ import annotations

import os
import time
from typing import Any

from jobstream import JobContext, PermanentError, job
from tests.apps.sinkfile import append

JOB_TYPE = "test.batch"


@job(JOB_TYPE)
def member(payload: dict[str, Any], ctx: JobContext) -> None:
    started = time.time()
    b = payload["behaviour"]
    if b == "permanent" and not os.environ.get("JOBSTREAM_TEST_FIXED"):
        raise PermanentError("dead-lettered by design")
    if b.startswith("sleep_ms:"):
        time.sleep(int(b.split(":")[1]) / 1000)
    if b.startswith("nest:"):
        n = int(b.split(":")[1])
        ctx.batch(JOB_TYPE, [{"seq": payload["seq"] * 1000 + i} for i in range(n)],
                  on_complete=(JOB_TYPE, {"seq": payload["seq"] + 100000,
                                          "behaviour": "callback"}))
    append({"job_id": ctx.job_id, "seq": payload["seq"], "behaviour": b,
            "attempt": ctx.attempt, "pid": os.getpid(), "start": started, "end": time.time(),
            "batch": ctx.headers.get("js-batch"), "parent_job_id": ctx.parent_job_id,
            **{k: payload[k] for k in ("batch_id", "total", "succeeded", "dead_lettered",
                                       "cancelled")}})
