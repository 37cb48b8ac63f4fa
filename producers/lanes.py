"""Priority lanes on the publishing side (docs/priorities.md): which topic a job of a lane goes
to, and the header that keeps the lane through retries, dead letters and replays."""

from __future__ import annotations

from collections.abc import Iterable

from jobstream.config.lane_rules import DEFAULT_LANE
from jobstream.config.settings import JobTypeSettings
from jobstream.config.topics import lane_topic
from jobstream.producers.errors import InvalidJob
from jobstream.schemas import wire


class UnknownLane(InvalidJob):
    """publish(priority=...) named a lane the job type does not have."""


def check_lane(job_type: str, cfg: JobTypeSettings, priority: str) -> str:
    """The lane `priority` names, or UnknownLane naming the job type's lanes."""
    if not isinstance(priority, str):
        raise UnknownLane(f"{job_type}: priority must be a lane name, got {priority!r}")
    if priority in cfg.lanes:
        return priority
    if not cfg.priorities:
        raise UnknownLane(
            f"{job_type}: no priority lanes configured (jobs.{job_type}.priorities), so "
            f"priority={priority!r} is not possible; only {DEFAULT_LANE!r}"
        )
    raise UnknownLane(
        f"{job_type}: unknown priority lane {priority!r}; its lanes are "
        f"{', '.join(cfg.priorities)}"
    )


def route(
    job_type: str, cfg: JobTypeSettings, priority: str, topic: str, hdrs: wire.HeaderList
) -> str:
    """The topic of the job's lane (T is `default`); records the lane in a js-priority header
    when the job type has lanes."""
    lane = check_lane(job_type, cfg, priority)
    if cfg.priorities:
        hdrs.append((wire.PRIORITY, lane.encode()))
    return lane_topic(topic, lane)


def lane_of_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    """The lane a record's js-priority header names, None without one."""
    for k, v in headers or ():
        if k == wire.PRIORITY and v:
            return v.decode("utf-8", "replace")
    return None


def lane_destination(
    main: str, lane_topics: Iterable[str], headers: Iterable[tuple[str, bytes | None]] | None
) -> str:
    """Where a job read back (a dead letter replayed, a delayed job due) goes: its lane's
    topic if the header names a lane whose topic is among `lane_topics`, T otherwise."""
    lane = lane_of_headers(headers)
    if lane is None:
        return main
    topic = lane_topic(main, lane)
    return topic if topic in tuple(lane_topics) else main
