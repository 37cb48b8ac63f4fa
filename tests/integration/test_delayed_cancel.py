"""Cancelling and rescheduling a delayed job (issue 22) on the real broker: Publisher.cancel and
`jobstream jobs cancel` write the tombstone and an audit record, and a real worker never runs a
cancelled job; the same job id published again with a later time runs once, at the later time."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobstream.consumers.ops.audit import list_audit
from tests.support.harness import Stack, run_cli


@pytest.fixture
def stack(stack_factory: Any) -> Stack:
    """Its workers are stopped and its topics deleted at the end (conftest.py)."""
    s: Stack = stack_factory()
    return s


def test_cancelled_jobs_never_run_and_a_rescheduled_one_runs_once_later(stack: Stack) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=6)
    later = soon + timedelta(seconds=4)
    with stack.publisher() as pub:
        ids = [pub.publish(stack.job_type, {"seq": i}, key=f"k{i}", run_at=soon)
               for i in range(8)]
        for i in (0, 1, 2):
            pub.cancel(stack.job_type, ids[i], key=f"k{i}")
        # The same id again with a later time: rescheduled, not doubled.
        pub.publish(stack.job_type, {"seq": 7}, key="k7", job_id=ids[7], run_at=later)
    res = run_cli("jobs", "cancel", stack.job_type, ids[3], "--key", "k3", env=stack.env())
    assert res.returncode == 0, res.stderr
    assert "cancelled" in res.stdout
    stack.start_worker()
    stack.wait_runs(4, timeout=60)  # ids[4..7]
    time.sleep(3)  # a cancelled job would have run by now (it was due with the others)
    runs = stack.runs()
    counts = Counter(r["job_id"] for r in runs)
    assert set(counts) == set(ids[4:]), counts
    assert max(counts.values()) == 1
    rescheduled = next(r for r in runs if r["job_id"] == ids[7])
    assert rescheduled["start"] * 1000 >= later.timestamp() * 1000
    audited = [r for r in list_audit(stack.settings, limit=500)
               if r.get("command") == "jobs cancel" and r.get("job_id") in ids]
    assert sorted(r["job_id"] for r in audited) == sorted(ids[:4])  # the one audit shared


def test_cancel_of_an_unknown_job_type_or_bad_id_is_one_error_line(stack: Stack) -> None:
    res = run_cli("jobs", "cancel", "no.such.type", "abc", env=stack.env())
    assert res.returncode == 1 and "unknown job type" in res.stderr
    res = run_cli("jobs", "cancel", stack.job_type, "bad id\n", env=stack.env())
    assert res.returncode == 1 and "Traceback" not in res.stderr and "job_id" in res.stderr
