"""Handlers that take the worker process down: crash evidence in the ledger, the crashed dead
letter, and the exit code."""

from __future__ import annotations

import json
import time

import pytest

from jobstream.schemas import wire
from tests.support.harness import Stack

CRASH_EXIT = 6  # consumers/errors.py EXIT_HANDLER_ENDED_PROCESS


def _dead_letters(stack: Stack) -> list[dict[str, str]]:
    return [
        {k: (v or b"").decode() for k, v in m.headers() or []}
        for m in stack.read_topic(stack.topics.dlq, timeout=5)
    ]


def _events(stack: Stack, name: str) -> list[dict]:
    out = []
    for log in sorted(stack.tmp.glob("worker-*.log")):
        for line in log.read_text().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                out.append(json.loads(line))
    return [e for e in out if e.get("event") == name]


@pytest.mark.parametrize(
    ("job_type", "behaviour", "exit_code"),
    [
        ("test.echo", "os_exit:0", CRASH_EXIT),  # os._exit(0) in a sync handler
        ("test.aecho", "os_exit:3", CRASH_EXIT),  # in an async one, asking for "fenced"
        ("test.echo", "segv", -11),  # a segfault: the signal, with faulthandler's stacks
    ],
)
def test_a_handler_that_kills_its_worker_is_dead_lettered_as_crashed(
    stack_factory, job_type: str, behaviour: str, exit_code: int
) -> None:
    """Issue 26 item 13: a handler that killed its process (os._exit, a segfault, the OOM
    killer) crash-looped the worker for ever: the job stayed at attempt 1, never reached the
    DLQ, its partition never advanced, and os._exit(0) even made the worker exit 0. Now each
    start is recorded first (outside the transaction), the job's last allowed run is alone,
    and after worker.max_crashes (3) deaths the next worker dead-letters it as `crashed` with
    the evidence; jobs that were running beside it at the deaths are not blamed, and every
    death exits non-zero."""
    stack: Stack = stack_factory(job_type=job_type)
    # Running when the first two deaths come (in other partitions too): shared blame, so they
    # must come through by running alone, not end in the DLQ.
    slow = stack.publish_many(
        [({"seq": 0, "behaviour": "sleep_ms:400"}, f"s{i}") for i in range(4)]
    )
    [bad] = stack.publish_many([({"seq": 0, "behaviour": behaviour}, "bad")])
    # Behind the bad one in its key: its partition must move on once the bad one is out.
    after = stack.publish_many([({"seq": i, "behaviour": "ok"}, "bad") for i in (1, 2)])
    codes = []
    for _ in range(6):
        proc = stack.start_worker()
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            if _dead_letters(stack):
                break
            time.sleep(0.5)
        if proc.poll() is None:
            break
        codes.append(proc.returncode)
        stack.procs.remove(proc)  # its death is this test's point, not a failure to report
    assert codes == [exit_code] * 3, f"worker exits {codes}; logs in {stack.tmp}"
    stack.wait_for(
        lambda: {r["job_id"] for r in stack.runs()} >= set(slow + after), 60, "the others run"
    )
    [dl] = _dead_letters(stack)
    assert dl[wire.JOB_ID] == bad
    assert dl[wire.ERROR_CATEGORY] == "crashed"
    assert dl[wire.ERROR_CLASS] == "jobstream.WorkerCrashed"
    assert "died 3 times" in dl[wire.ERROR_MESSAGE] and "alone" in dl[wire.ERROR_MESSAGE]
    assert dl[wire.ERROR_STACK].count("died while running it") == 3
    # The key's order held: the jobs behind the bad one ran after it was dead-lettered.
    assert [r["seq"] for r in stack.runs() if r["key"] == "bad"] == [1, 2]
    alone = {e["job_id"] for e in _events(stack, "running_alone")}
    assert bad in alone
    if exit_code == CRASH_EXIT:
        [ended] = [e for e in _events(stack, "handler_ended_process")][-1:]
        assert ended["job_id"] == bad and ended["exit_code"] == CRASH_EXIT
    assert stack.stop_all() == [0]
    # Committed past the dead letter and the jobs behind it.
    ends = stack.end_offsets(stack.topics.main)
    assert {p: max(o, 0) for p, o in stack.committed(stack.topics.main).items()} == ends
