"""`jobstream worker --processes 2` (issue 29): one supervisor, two worker processes in the group,
one HTTP port. On a real broker: both children run jobs; the pod's /metrics adds up both
children's counters; a SIGKILLed child is restarted and no job is lost; SIGTERM drains both and
the supervisor exits 0. Bad input (`--processes 0`) is a clear error."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import Stack, free_port, run_cli


def _children(sup_pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == sup_pid:
                out.append(int(entry))
    return out


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def _ready(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).status == 200
    except OSError:
        return False


@pytest.fixture
def stack(stack_factory: Any) -> Stack:
    """Its workers are stopped and its topics deleted at the end (conftest.py)."""
    s: Stack = stack_factory(worker={"http_port": free_port()})
    return s


def test_two_processes_share_the_work_restart_and_drain(stack: Stack) -> None:
    port = stack.settings.worker.http_port
    sup = stack.start_worker("--processes", "2", log_name="supervisor.log")
    stack.wait_for(lambda: _ready(port), 90, "both worker processes ready")
    kids = _children(sup.pid)
    assert len(kids) == 2, kids
    stack.publish_many([({"seq": i}, f"k{i}") for i in range(200)])
    runs = stack.wait_runs(200, timeout=90)
    assert {r["pid"] for r in runs} == set(kids), "both children ran jobs"
    stack.wait_for(lambda: _metric(port, "jobstream_jobs_total") >= 200, 30, "summed metrics")
    assert _metric(port, "jobstream_worker_processes") == 2

    os.kill(kids[0], signal.SIGKILL)  # a child dies: restarted, its jobs redone, none lost
    stack.publish_many([({"seq": 1000 + i}, f"k{i}") for i in range(200)])
    stack.wait_runs(400, timeout=120)
    stack.wait_for(lambda: len(_children(sup.pid)) == 2 and kids[0] not in _children(sup.pid),
                   60, "the killed child restarted")
    assert _metric(port, "jobstream_worker_restarts_total") == 1

    sup.send_signal(signal.SIGTERM)
    assert sup.wait(90) == 0, (stack.tmp / "supervisor.log").read_text()[-3000:]
    assert not _children(sup.pid)
    assert len({r["job_id"] for r in stack.runs()}) == 400


def test_bad_processes_values_are_clear_errors(stack: Stack) -> None:
    env = {"JOBSTREAM_CONFIG": str(stack.config_path)}
    for bad in ("0", "many", "65"):
        res = run_cli("worker", "--app", "tests.apps.sink", "--processes", bad, env=env)
        assert res.returncode == 1 and "--processes" in res.stderr, (bad, res.stderr)
        assert "Traceback" not in res.stderr
    res = run_cli("worker", "--app", "tests.apps.sink",
                  env={**env, "JOBSTREAM_WORKER__PROCESSES": "0"})
    assert res.returncode == 1 and "processes" in res.stderr, res.stderr


def test_a_child_that_cannot_start_stops_the_pod(stack: Stack) -> None:
    """A wrong job module fails in every child alike: the supervisor stops with its code
    instead of restarting N children for ever."""
    started = time.monotonic()
    res = run_cli("worker", "--app", "no.such.module", "--processes", "2",
                  env={"JOBSTREAM_CONFIG": str(stack.config_path)}, timeout=120)
    assert res.returncode == 1, res.stderr[-2000:]
    assert time.monotonic() - started < 60
