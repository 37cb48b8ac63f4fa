"""Handler executor: timeouts count from when a thread starts a task, not from submission."""

from __future__ import annotations

import threading
import time

from consumers.errors import JobTimeout
from consumers.executor import Executor, Task


def test_queued_task_does_not_time_out_before_it_starts() -> None:
    ex = Executor(threads=1)
    release = threading.Event()
    ex.submit(Task(lambda: release.wait(5), (), False, 0.3, "stuck"))
    ex.submit(Task(lambda: None, (), False, 0.3, "queued"))
    time.sleep(0.5)
    ex.check_timeouts()  # "stuck" is late; "queued" has not started and must not be
    time.sleep(0.3)  # the replacement thread runs "queued"
    results = {}
    while not ex.results.empty():
        token, error, _ = ex.results.get()
        results[token] = error
    release.set()
    ex.shutdown()
    assert isinstance(results["stuck"], JobTimeout)
    assert "queued" in results and results["queued"] is None
    assert ex.abandoned == 1
