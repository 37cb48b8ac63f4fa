"""The worker's per-job fast paths write what the usual path writes: the outcome line made in
one string (config/logging.py JsonLines), a history record sealed without its JSON round trip
(schemas/chain.py seal plain=True), and ctx.log bound only when a handler uses it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import structlog

from jobstream.config.logging import configure_logging, flush_logs, get_logger
from jobstream.config.settings import LogSettings
from jobstream.consumers.context import context_for, log_fields
from jobstream.consumers.runtime.hook_defaults import LifecycleLog
from jobstream.consumers.runtime.hooks import Finished
from jobstream.consumers.runtime.types import Job, Outcome
from jobstream.schemas import history
from jobstream.schemas.chain import GENESIS, seal


def _job(**headers: str) -> Job:
    return Job("jobs.t", 3, 12345, b"k", b"v", dict(headers), [], "t.echo", "0123abcd", 2)


@pytest.fixture
def worker_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The worker's logging set-up (buffered JSON) on a file; yields (make_log, read_lines)."""
    monkeypatch.setattr("jobstream.config.logging._buffered", None)
    path = tmp_path / "worker.log"
    stream = path.open("w")

    def make(level: str = "INFO") -> Any:
        configure_logging(LogSettings(level=level, format="json"), stream, buffered=True)
        return get_logger("jobstream.worker", worker="host-1-ab\u00e9").bind()

    def lines() -> list[str]:
        flush_logs()
        return path.read_text().splitlines()

    yield make, lines
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()
    stream.close()


FINISHED = [
    Finished(_job(), "t.echo", Outcome.SUCCEEDED, 0.0123456),
    Finished(_job(**{"js-parent-job-id": 'p\u00e9"x\n'}), "t.echo", Outcome.DEDUPLICATED),
    Finished(_job(traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"), "t.echo",
             Outcome.RETRIED, 1.5, tier="10s"),
    Finished(_job(), "t.echo", Outcome.SUCCEEDED, None),
]


def _untimed(line: str) -> str:
    return line[: line.index('"timestamp": ')]


@pytest.mark.parametrize("finished", FINISHED, ids=lambda f: f.outcome.value)
def test_outcome_line_is_the_text_structlog_writes(worker_log: Any, finished: Finished) -> None:
    make, lines = worker_log
    hook = LifecycleLog(make())
    assert hook.lines.usable
    hook.after_outcome(finished)
    hook.lines.usable = False  # the usual way: structlog's bound logger and json_line
    hook.after_outcome(finished)
    fast, usual = lines()
    assert _untimed(fast) == _untimed(usual)
    assert fast.endswith('Z"}') and len(fast) - len(_untimed(fast)) == len(usual) - len(
        _untimed(usual))


def test_below_the_level_nothing_is_written(worker_log: Any) -> None:
    make, lines = worker_log
    hook = LifecycleLog(make("WARNING"))
    hook.after_outcome(FINISHED[0])
    assert lines() == []


def test_bound_contextvars_take_the_usual_way(worker_log: Any) -> None:
    make, lines = worker_log
    hook = LifecycleLog(make())
    structlog.contextvars.bind_contextvars(service="billing")
    try:
        hook.after_outcome(FINISHED[0])
    finally:
        structlog.contextvars.clear_contextvars()
    (line,) = lines()
    assert '"service": "billing"' in line and '"event": "succeeded"' in line


def test_not_the_worker_set_up_is_not_usable(tmp_path: Path) -> None:
    with (tmp_path / "x.log").open("w") as stream:
        try:
            configure_logging(LogSettings(format="json"), stream)  # not buffered
            assert not LifecycleLog(get_logger("w").bind()).lines.usable
            configure_logging(LogSettings(format="console"), stream, buffered=True)
            assert not LifecycleLog(get_logger("w").bind()).lines.usable
        finally:
            structlog.reset_defaults()
            logging.getLogger().handlers.clear()


def test_plain_seal_hashes_and_writes_the_same() -> None:
    rec = history.attempt(
        job_id="j", job_type="t.echo", attempt=1, worker="w\u00e9", started_at=1, finished_at=5,
        outcome="succeeded", policy=history.Policy((1.0, 10.0), 3, 30.0),
        source=("jobs.t", 3, 7), trace_id="a" * 32, enqueued_at=1)
    before = dict(rec)
    assert history.encode(rec, GENESIS, "jobs.t:3", plain=True) == history.encode(
        rec, GENESIS, "jobs.t:3")
    assert rec == before  # the caller's record is not changed
    assert seal({"t": (1, 2)}, GENESIS, plain=True)["chain"] == seal(
        {"t": [1, 2]}, GENESIS)["chain"]


def test_ctx_log_binds_the_job_fields_when_used(worker_log: Any) -> None:
    make, lines = worker_log
    log = make()
    job = _job()
    ctx = context_for(job, log)
    assert ctx.log._bound is None  # nothing bound until the handler logs
    ctx.log.info("charging", amount=3)
    ctx.log.bind(step=2).info("charged")
    first, second = lines()
    fields = log_fields(job)
    for line in (first, second):
        for k in ("job_id", "job_type", "offset"):
            assert f'"{k}": ' in line and str(fields[k]) in line
    assert '"amount": 3' in first and '"step": 2' in second


def test_ctx_log_can_be_copied_before_and_after_use(worker_log: Any) -> None:
    """A copy (copy.copy, or a library copying what it is given) asks for the proxy's own
    attributes before they are set: they must not be looked up on the logger (that recursed)."""
    import copy

    make, lines = worker_log
    ctx = context_for(_job(), make())
    fresh = copy.copy(ctx.log)
    fresh.info("from_a_copy")
    ctx.log.info("used")
    copy.copy(ctx.log).info("copied_after_use")
    assert [line.split('"event": ')[1].split(",")[0] for line in lines()] == [
        '"from_a_copy"', '"used"', '"copied_after_use"']
