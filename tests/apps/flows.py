"""Test job module for workflows (tests/integration/test_workflows.py, tests/chaos): test.echo
runs like tests/apps/sink.py and records every run to the sink, and its behaviour may also
enqueue children or return a result for a chain:

- `parent:N:fail_until:K` enqueues N children (seq*1000 + i, behaviour ok), then fails until
  attempt K (the children of the failed attempts are dropped with them);
- `parent:N:permanent` enqueues N children, then fails as permanent (dead-lettered);
- `step` returns {"seq": seq + 1}: a chain step handing its result on;
- `step_fail_until:K` the same, failing until attempt K;
- `step_permanent` the same, failing as permanent until JOBSTREAM_TEST_FIXED is set.
The sink line carries the parent id and the trace id, so a test checks what each child saw.
"""

from __future__ import annotations

import os
import time
from typing import Any

from jobstream import JobContext, PermanentError, job
from tests.apps.sinkfile import append


def _record(payload: dict[str, Any], ctx: JobContext, started: float) -> None:
    append({
        "job_id": ctx.job_id, "key": ctx.key, "seq": payload["seq"], "attempt": ctx.attempt,
        "pid": os.getpid(), "start": started, "end": time.time(), "topic": ctx.topic,
        "trace_id": ctx.trace_id, "parent_job_id": ctx.parent_job_id,
        "behaviour": payload["behaviour"],
    })


@job("test.echo")
def echo(payload: dict[str, Any], ctx: JobContext) -> Any:
    started = time.time()
    parts = payload["behaviour"].split(":")
    if parts[0] == "parent":
        n = int(parts[1])
        for i in range(n):
            ctx.enqueue("test.echo", {"seq": payload["seq"] * 1000 + i, "behaviour": "ok"},
                        key=f"child-{payload['seq']}-{i}")
        if parts[2] == "fail_until" and ctx.attempt < int(parts[3]):
            raise ConnectionError(f"parent fails (attempt {ctx.attempt})")
        if parts[2] == "permanent":
            raise PermanentError("parent dead-lettered")
        if parts[2] == "sleep_ms":
            time.sleep(int(parts[3]) / 1000)
    if parts[0] == "step_fail_until" and ctx.attempt < int(parts[1]):
        raise ConnectionError(f"step fails (attempt {ctx.attempt})")
    if parts[0] == "step_permanent" and not os.environ.get("JOBSTREAM_TEST_FIXED"):
        raise PermanentError("step rejected until the fix")
    _record(payload, ctx, started)
    if parts[0] in ("step", "step_fail_until", "step_permanent"):
        return {"seq": payload["seq"] + 1}
    return None
