"""context_for fills a JobContext in directly (its frozen dataclass __init__ set each field
through object.__setattr__: 4 us of the per-job path). These tests keep that honest: every
field is set, to what the public constructor would set, and the context stays frozen."""

from __future__ import annotations

import dataclasses

import pytest

from jobstream.consumers.context import JobContext, context_for
from jobstream.consumers.runtime.types import Job
from jobstream.schemas import wire


class _Log:
    def bind(self, **fields: object) -> dict[str, object]:
        return fields


def _job() -> Job:
    job = Job("jobs.email", 3, 41, b"user-7", b"", {wire.PARENT_JOB_ID: "parent-1",
                                                     wire.TRACEPARENT: "00-ab-cd-01"}, [])
    job.job_id, job.job_type, job.attempt, job.enqueued_at_ms = "job-1", "email", 2, 1_700
    return job


def test_every_field_is_set_as_the_constructor_would() -> None:
    def reporter(fraction: float, message: str | None) -> None:
        return None

    ctx = context_for(_job(), _Log(), reporter, None)
    names = {f.name for f in dataclasses.fields(JobContext)}
    assert names <= set(vars(ctx)), f"context_for leaves {names - set(vars(ctx))} unset"
    rebuilt = JobContext(**{name: getattr(ctx, name) for name in names})
    assert rebuilt == ctx
    assert (ctx.key, ctx.parent_job_id, ctx.traceparent) == ("user-7", "parent-1", "00-ab-cd-01")
    assert (ctx.topic, ctx.partition, ctx.offset, ctx.attempt) == ("jobs.email", 3, 41, 2)
    assert ctx.reporter is reporter and ctx.extra == {}


def test_each_context_has_its_own_extra_and_stays_frozen() -> None:
    a, b = context_for(_job(), _Log()), context_for(_job(), _Log())
    a.extra["seen"] = True
    assert b.extra == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.job_id = "other"  # type: ignore[misc]


def test_log_binds_the_job_fields_on_first_use() -> None:
    ctx = context_for(_job(), _Log())
    assert ctx.log.get("job_id") == "job-1"
