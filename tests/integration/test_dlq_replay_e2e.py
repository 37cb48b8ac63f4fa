"""Dead letters end to end with real workers: fill the DLQ, replay while still broken (no
loop), fix the handler, replay to success, replay again (nothing runs)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.harness import ROOT, Stack


def _replay(stack: Stack) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "jobstream",
            "dlq",
            "replay",
            stack.job_type,
            "--yes",
            "--from-start",
        ],
        capture_output=True,
        text=True,
        env=stack.env(),
        cwd=ROOT,
        timeout=120,
    )


def test_replay_loop_free_then_fixed_then_idempotent(stack_factory) -> None:
    stack: Stack = stack_factory()
    ids = stack.publish_many([({"seq": 0, "behaviour": "permanent"}, f"k{i}") for i in range(10)])
    stack.start_worker()
    stack.wait_for(lambda: len(stack.read_topic(stack.topics.dlq)) == 10, 60, "10 dead letters")

    # Still broken: the replay ends, and each job is dead-lettered once more, not in a loop.
    res = _replay(stack)
    assert res.returncode == 0, res.stderr
    stack.wait_for(lambda: len(stack.read_topic(stack.topics.dlq)) == 20, 60, "20 dead letters")
    assert stack.stop_all() == [0]
    assert stack.runs() == []

    # The fix is deployed: a replay brings every job to success.
    stack.procs.clear()
    stack.start_worker(JOBSTREAM_TEST_FIXED="1")
    res = _replay(stack)
    assert res.returncode == 0, res.stderr
    stack.wait_runs(10, timeout=60)
    assert sorted(r["job_id"] for r in stack.runs()) == sorted(ids)

    # Replaying again (from the start: 20 dead letters, 2 per job) runs nothing again.
    res = _replay(stack)
    assert res.returncode == 0, res.stderr
    ends = stack.end_offsets(stack.topics.main)
    stack.wait_for(
        lambda: {p: max(o, 0) for p, o in stack.committed(stack.topics.main).items()} == ends,
        60,
        "replayed records consumed",
    )
    assert len(stack.runs()) == 10
