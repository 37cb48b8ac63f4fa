"""Admission check for job definitions: each registered job type has a schema, a timeout,
bounded retries and a DLQ (run by `jobstream schemas check --app`)."""

from __future__ import annotations

from jobstream.config.settings import Ordering, Settings
from jobstream.consumers.jobs import JobDef
from jobstream.schemas.registry import SchemaRegistry


def check_jobs(settings: Settings, registry: SchemaRegistry, jobs: dict[str, JobDef]) -> list[str]:
    problems = []
    known = set(registry.job_types())
    for jt in sorted(jobs):
        if jt not in known:
            problems.append(
                f"{jt}: handler registered but no schema (add <dir>/{jt}/v1.avsc to a "
                "directory listed in schema_dirs)"
            )
            continue
        cfg = settings.job(jt)
        if not cfg.timeout_s or cfg.timeout_s <= 0:
            problems.append(f"{jt}: no timeout")
        if cfg.max_attempts < 1 or cfg.max_attempts > 100:
            problems.append(f"{jt}: retries are not bounded (max_attempts={cfg.max_attempts})")
        if cfg.ordering is Ordering.KEY and cfg.max_attempts > 1 and not cfg.retry_tiers:
            problems.append(f"{jt}: max_attempts > 1 but no retry tiers")
    for jt in sorted(set(settings.jobs) - known):
        problems.append(f"{jt}: configured in settings but has no schema")
    return problems
