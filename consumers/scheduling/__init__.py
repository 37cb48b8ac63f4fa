"""Delayed jobs: the pending index of T.scheduled partitions and the scheduler thread that
dispatches them (docs/scheduling.md)."""

from __future__ import annotations

from collections.abc import Callable

from jobstream.config.settings import Mode, Settings
from jobstream.consumers.scheduling.scheduler import Scheduler

__all__ = ["Scheduler", "start_scheduler"]


def start_scheduler(settings: Settings, job_types: list[str], group: str, worker_id: str,
                    on_failure: Callable[[str], None] | None = None) -> Scheduler | None:
    """The worker's scheduler thread, started; None when it has no job types or runs without
    transactions (a dispatch and its tombstone must commit together)."""
    if not job_types or settings.worker.mode is not Mode.TRANSACTIONAL:
        return None
    s = Scheduler(settings, job_types, group, worker_id, on_failure)
    s.start()
    return s
