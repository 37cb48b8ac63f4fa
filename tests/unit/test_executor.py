"""Handler executor: timeouts count from when a thread starts a task, not from submission; a
timed-out thread holds its job until it ends (bounded); limits per kind; the event loop lives
on whatever a handler raises."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

from jobstream.consumers.errors import JobTimeout
from jobstream.consumers.runtime.executor import Executor, Task


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
        token, error, _, _ = ex.results.get()
        results[token] = error
    assert results == {"queued": None}  # "stuck" is reported when its thread ends
    release.set()
    token, error, _, _ = ex.results.get(timeout=5)
    ex.shutdown()
    assert token == "stuck" and isinstance(error, JobTimeout)
    assert (ex.overruns, ex.abandoned) == (1, 0)


def test_gate_is_asked_before_running_and_told_the_result() -> None:
    from jobstream.consumers.errors import NotAdmitted

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
        token, error, _, _ = ex.results.get(timeout=5)
        assert (token, type(error), ran) == ("a", NotAdmitted, [])
        gate.allow = True
        ex.submit(Task(ran.append, (2,), False, 5.0, "b", gate=gate))
        token, error, _, _ = ex.results.get(timeout=5)
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
        token, error, _, _ = ex.results.get(timeout=5)
        results[token] = error
    ex.shutdown()
    assert isinstance(results["late"], JobTimeout) and "done after" in str(results["late"])
    assert results["quick"] is None


def _results(ex: Executor, n: int, timeout: float = 10) -> dict[object, BaseException | None]:
    out: dict[object, BaseException | None] = {}
    deadline = time.monotonic() + timeout
    while len(out) < n:
        token, error, _, _ = ex.results.get(timeout=max(0.01, deadline - time.monotonic()))
        out[token] = error
    return out


# Issue 26 item 1 ------------------------------------------------------------------------------


def test_a_sync_handler_returning_a_coroutine_has_it_awaited() -> None:
    """Issue 26 item 1: a sync handler that returns a coroutine (a sync decorator around an
    async def does this) was counted succeeded while the coroutine never ran. It is awaited
    now, on the worker's event loop: its work runs and its failure is the job's failure."""
    ran: list[int] = []

    async def work(x: int) -> None:
        await asyncio.sleep(0.01)
        if x < 0:
            raise ConnectionError("downstream down")
        ran.append(x)

    def handler(x: int) -> object:
        return work(x)

    ex = Executor(1)
    try:
        ex.submit(Task(handler, (1,), False, 5.0, "ok"))
        ex.submit(Task(handler, (-1,), False, 5.0, "bad"))
        got = _results(ex, 2)
    finally:
        ex.shutdown()
    assert got["ok"] is None and ran == [1]
    assert isinstance(got["bad"], ConnectionError)


def test_a_returned_coroutine_runs_under_the_jobs_timeout_and_is_cancelled() -> None:
    """Issue 26 item 1: the awaited coroutine is bound by the job's timeout like an async
    handler: cancelled at the timeout, and the job is a timeout failure."""
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    ex = Executor(1)
    try:
        t0 = time.monotonic()
        ex.submit(Task(lambda: slow(), (), False, 0.3, "slow"))
        got = _results(ex, 1)
        took = time.monotonic() - t0
    finally:
        ex.shutdown()
    assert isinstance(got["slow"], JobTimeout)
    assert cancelled.is_set() and took < 5


# Issue 26 item 6 ------------------------------------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_kinds_limit_bounds_how_many_of_it_run_at_once(is_async: bool) -> None:
    """Issue 26 item 6: `jobs.<type>.concurrency` was accepted and ignored. The executor now
    runs at most that many tasks of the limited kind at once (sync and async alike), while
    other kinds use the rest of the pool."""
    lock = threading.Lock()
    now = {"a": 0, "b": 0}
    peak = {"a": 0, "b": 0}

    def enter(kind: str) -> None:
        with lock:
            now[kind] += 1
            peak[kind] = max(peak[kind], now[kind])

    def leave(kind: str) -> None:
        with lock:
            now[kind] -= 1

    def sync_job(kind: str) -> None:
        enter(kind)
        time.sleep(0.1)
        leave(kind)

    async def async_job(kind: str) -> None:
        enter(kind)
        await asyncio.sleep(0.1)
        leave(kind)

    ex = Executor(8, limits={"a": 2})
    try:
        for i in range(8):
            ex.submit(Task(async_job if is_async else sync_job, ("a",), is_async, 5.0,
                           ("a", i), kind="a"))
        for i in range(4):
            ex.submit(Task(async_job if is_async else sync_job, ("b",), is_async, 5.0,
                           ("b", i), kind="b"))
        got = _results(ex, 12)
    finally:
        ex.shutdown()
    assert all(e is None for e in got.values()), got
    assert peak["a"] == 2, peak
    assert peak["b"] >= 2, peak  # not queued behind the limited kind


def test_a_limited_kinds_slot_stays_taken_while_a_timed_out_thread_runs() -> None:
    """Issue 26 items 6 and 7: "at most N at once" counts a timed-out sync handler whose
    thread still runs: the next task of its kind starts only when that thread ends."""
    release = threading.Event()
    started: list[float] = []
    ex = Executor(4, limits={"a": 1})
    try:
        ex.submit(Task(lambda: release.wait(5), (), False, 0.2, "stuck", kind="a",
                       abandon_after_s=10))
        ex.submit(Task(lambda: started.append(time.monotonic()), (), False, 5.0, "next",
                       kind="a"))
        time.sleep(0.4)
        ex.check_timeouts()
        time.sleep(0.3)
        assert started == [] and ex.results.empty()
        release.set()
        got = _results(ex, 2)
    finally:
        ex.shutdown()
    assert isinstance(got["stuck"], JobTimeout) and got["next"] is None and started


def test_tasks_waiting_for_a_slot_can_be_withdrawn_unrun() -> None:
    """Issue 26 item 6: a job waiting for its type's slot has not started; when its partition
    goes it is withdrawn (no run, no result) and the slot passes to the next one left."""
    release = threading.Event()
    ran: list[str] = []
    ex = Executor(4, limits={"a": 1})
    try:
        ex.submit(Task(lambda: release.wait(5), (), False, 5.0, "busy", kind="a"))
        for name in ("w1", "w2", "w3"):
            ex.submit(Task(ran.append, (name,), False, 5.0, name, kind="a"))
        assert ex.withdraw(lambda token: token in ("w1", "w3")) == ["w1", "w3"]
        release.set()
        got = _results(ex, 2)
        time.sleep(0.2)
    finally:
        ex.shutdown()
    assert got == {"busy": None, "w2": None} and ran == ["w2"] and ex.results.empty()


# Issue 26 item 7 ------------------------------------------------------------------------------


def test_a_timed_out_sync_handlers_result_waits_for_its_thread_to_end() -> None:
    """Issue 26 item 7: a sync handler past its timeout was reported at once while its thread
    ran on, so the worker started its retry (and its key's next job) beside it. Now the
    timeout is noticed (the slot goes to a new thread, and check_timeouts says which job
    overran) but its result comes only when the thread really ends."""
    release = threading.Event()
    ex = Executor(threads=1)
    try:
        ex.submit(Task(lambda: release.wait(5), (), False, 0.2, "slow", abandon_after_s=10))
        ex.submit(Task(lambda: None, (), False, 5.0, "other"))
        time.sleep(0.4)
        assert ex.check_timeouts() == ["slow"]
        assert ex.check_timeouts() == []  # told once
        got = _results(ex, 1)  # capacity stays: a fresh thread ran "other"
        assert got == {"other": None}
        time.sleep(0.2)
        assert ex.results.empty(), "reported while its thread still runs"
        release.set()
        got = _results(ex, 1)
    finally:
        ex.shutdown()
    assert isinstance(got["slow"], JobTimeout) and "done after" in str(got["slow"])
    assert not got["slow"].abandoned
    assert ex.abandoned == 0


def test_a_breaker_hears_of_a_timeout_when_it_happens_not_when_the_thread_ends() -> None:
    """Issue 26 item 7: holding the result must not hold back the circuit breaker: the gate is
    told of the timeout when it is noticed, and not told again when the thread ends."""
    told: list[BaseException | None] = []

    class Gate:
        def admit(self) -> bool:
            return True

        def done(self, error: BaseException | None) -> None:
            told.append(error)

    release = threading.Event()
    ex = Executor(threads=1)
    try:
        ex.submit(Task(lambda: release.wait(5), (), False, 0.2, "slow", gate=Gate(),
                       abandon_after_s=10))
        time.sleep(0.3)
        ex.check_timeouts()
        assert [type(e) for e in told] == [JobTimeout] and ex.results.empty()
        release.set()
        _results(ex, 1)
    finally:
        ex.shutdown()
    assert len(told) == 1


def test_a_thread_outliving_the_bound_is_given_up_loudly() -> None:
    """Issue 26 item 7: the wait is bounded: a thread still running abandon_after_s after its
    timeout is given up. The job's result is then a timeout marked abandoned (the worker
    logs it as an error and counts it), and the executor counts it."""
    release = threading.Event()
    ex = Executor(threads=1)
    try:
        ex.submit(Task(lambda: release.wait(10), (), False, 0.2, "hung", abandon_after_s=0.3))
        time.sleep(0.3)
        assert ex.check_timeouts() == ["hung"]
        assert ex.results.empty()
        time.sleep(0.4)
        ex.check_timeouts()
        got = _results(ex, 1, timeout=1)
    finally:
        release.set()
        ex.shutdown()
    assert isinstance(got["hung"], JobTimeout) and got["hung"].abandoned
    assert "still running" in str(got["hung"])
    assert ex.abandoned == 1


def test_give_up_reports_overrunning_threads_at_once() -> None:
    """Issue 26 item 7: at shutdown the process ends and its threads with it, so a job whose
    thread overran is routed as timed out then instead of being left for a redo."""
    release = threading.Event()
    ex = Executor(threads=1)
    try:
        ex.submit(Task(lambda: release.wait(10), (), False, 0.2, "hung", abandon_after_s=60))
        time.sleep(0.3)
        ex.check_timeouts()
        assert ex.results.empty()
        ex.check_timeouts(give_up=True)
        got = _results(ex, 1, timeout=1)
    finally:
        release.set()
        ex.shutdown()
    assert isinstance(got["hung"], JobTimeout) and got["hung"].abandoned


# Issue 26 item 12 -----------------------------------------------------------------------------


class _Custom(BaseException):
    pass


@pytest.mark.parametrize(
    "exc", [SystemExit(3), KeyboardInterrupt(), _Custom("odd")], ids=lambda e: type(e).__name__
)
def test_base_exceptions_in_async_handlers_are_job_failures(exc: BaseException) -> None:
    """Issue 26 item 12: sys.exit() (SystemExit) in an async handler escaped asyncio's task and
    stopped the event loop's thread: the job never finished and no later async job ran. Any
    BaseException from a handler is now that job's failure, and the loop goes on."""

    async def bad() -> None:
        raise exc

    async def good() -> None:
        await asyncio.sleep(0)

    ex = Executor(2)
    try:
        ex.submit(Task(bad, (), True, 5.0, "bad"))
        assert _results(ex, 1)["bad"] is exc
        ex.submit(Task(good, (), True, 5.0, "good"))
        assert _results(ex, 1) == {"good": None}
    finally:
        ex.shutdown()


def test_system_exit_in_a_sync_handler_is_a_job_failure() -> None:
    """Issue 26 item 12: the same for sync handlers (their thread serves the next job)."""
    ex = Executor(1)
    try:
        ex.submit(Task(lambda: sys.exit(2), (), False, 5.0, "bad"))
        ex.submit(Task(lambda: None, (), False, 5.0, "good"))
        got = _results(ex, 2)
    finally:
        ex.shutdown()
    assert isinstance(got["bad"], SystemExit) and got["good"] is None


def test_the_event_loop_survives_a_handler_stopping_it() -> None:
    """Issue 26 item 12: a handler that stops the loop (loop.stop(), or a callback raising
    SystemExit) no longer ends the loop's thread: it runs on and later async jobs run."""

    async def stop_it() -> None:
        asyncio.get_running_loop().stop()

    async def exit_later() -> None:
        asyncio.get_running_loop().call_soon(sys.exit, 5)

    async def good() -> None:
        await asyncio.sleep(0.01)

    ex = Executor(2)
    try:
        ex.submit(Task(stop_it, (), True, 5.0, "stop"))
        ex.submit(Task(exit_later, (), True, 5.0, "exit"))
        assert _results(ex, 2) == {"stop": None, "exit": None}
        time.sleep(0.1)
        ex.submit(Task(good, (), True, 5.0, "good"))
        assert _results(ex, 1) == {"good": None}
        assert ex.loop_problem(5.0) is None
    finally:
        ex.shutdown()


def test_a_blocked_event_loop_is_reported() -> None:
    """Issue 26 item 12: a loop that cannot run (blocked by a sync call in an async def, or
    its thread gone) is a problem the health check reports; once it runs again it is not."""
    ex = Executor(1)
    try:
        assert ex.loop_problem(0.5) is None

        async def blocks() -> None:
            time.sleep(2.5)

        ex.submit(Task(blocks, (), True, 5.0, "block"))
        time.sleep(2.0)
        problem = ex.loop_problem(0.5)
        assert problem is not None and "event loop" in problem and "blocked" in problem
        _results(ex, 1)
        time.sleep(0.2)
        assert ex.loop_problem(0.5) is None
    finally:
        ex.shutdown()
    time.sleep(0.2)
    assert "stopped" in (ex.loop_problem(0.5) or "")
