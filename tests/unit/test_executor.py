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


def test_gate_is_asked_before_running_and_told_the_result() -> None:
    from consumers.errors import NotAdmitted

    class Gate:
        def __init__(self) -> None:
            self.allow = False
            self.told: list[BaseException | None] = []

        def admit(self) -> bool:
            return self.allow

        def done(self, error: BaseException | None) -> None:
            self.told.append(error)

    ran: list[int] = []
    gate = Gate()
    ex = Executor(1)
    try:
        ex.submit(Task(ran.append, (1,), False, 5.0, "a", gate=gate))
        token, error, _ = ex.results.get(timeout=5)
        assert (token, type(error), ran) == ("a", NotAdmitted, [])
        gate.allow = True
        ex.submit(Task(ran.append, (2,), False, 5.0, "b", gate=gate))
        token, error, _ = ex.results.get(timeout=5)
        assert (token, error, ran) == ("b", None, [2])
        assert [type(e) for e in gate.told] == [NotAdmitted, type(None)]
    finally:
        ex.shutdown()


def test_a_run_that_finishes_past_its_timeout_is_a_timeout() -> None:
    """Whether the loop noticed the late run first must not decide success versus timeout."""
    ex = Executor(threads=1)
    ex.submit(Task(lambda: time.sleep(0.4), (), False, 0.2, "late"))
    ex.submit(Task(lambda: None, (), False, 0.2, "quick"))
    deadline = time.monotonic() + 5
    results = {}
    while len(results) < 2 and time.monotonic() < deadline:  # no check_timeouts() here
        token, error, _ = ex.results.get(timeout=5)
        results[token] = error
    ex.shutdown()
    assert isinstance(results["late"], JobTimeout) and "done after" in str(results["late"])
    assert results["quick"] is None
