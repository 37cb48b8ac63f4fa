"""Delayed jobs on the publisher's side: when a job is due, and where its T.scheduled record goes.

A delayed job is written to partition p of T.scheduled, keyed by its job id, where p is the
partition its own key picks on T: the scheduler that owns p dispatches it to T partition p, so a
delayed job keeps its key's partition (and the ledger partition that dedups it).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from jobstream.config.durations import format_duration, parse_duration
from jobstream.producers.errors import InvalidJob


def due_ms(
    delay: str | float | None, run_at: datetime | None, max_delay_s: float,
    now_ms: int | None = None,
) -> int | None:
    """The due time in ms since the epoch, or None when the job is to be published at once
    (no delay, a zero delay or a time already past). Raises InvalidJob for a bad delay, a naive
    datetime, both given, or a due time beyond `max_delay_s`."""
    if delay is None and run_at is None:
        return None
    if delay is not None and run_at is not None:
        raise InvalidJob("give delay or run_at, not both")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise InvalidJob(f"run_at must be a datetime, not {type(run_at).__name__}")
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise InvalidJob(
                f"run_at={run_at.isoformat()} is a naive datetime (no time zone): give an aware "
                "one, e.g. datetime(..., tzinfo=timezone.utc) or datetime.now(UTC) + timedelta()"
            )
        due = int(run_at.timestamp() * 1000)
    else:
        try:
            seconds = parse_duration(delay, allow_zero=True)  # type: ignore[arg-type]
        except ValueError as e:
            raise InvalidJob(f"delay: {e}") from None
        due = now + round(seconds * 1000)
    if due <= now:
        return None
    if due - now > max_delay_s * 1000:
        raise InvalidJob(
            f"due in {format_duration(round((due - now) / 1000))}, beyond max_delay_s="
            f"{format_duration(max_delay_s)} of the job type (jobs.<job_type>.max_delay_s)"
        )
    return due


def partition_count(producer: Any, topic: str, cache: dict[str, int], timeout: float = 10.0
                    ) -> int:
    """The partition count of `topic` (cached: a topic's count only grows, and `topics apply`
    refuses to change it silently)."""
    n = cache.get(topic)
    if n is None:
        from jobstream.producers.errors import PublishError

        md = producer.list_topics(topic, timeout=timeout)
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise PublishError(
                f"topic {topic} does not exist; create it with `jobstream topics apply`"
            )
        n = cache[topic] = len(meta.partitions)
    return n


def cancel(pub: Any, job_type: str, job_id: str, key: str | None, timeout: float,
           audit: bool = True) -> None:
    """The tombstone of a delayed job on T.scheduled, acknowledged, then its audit record
    (audit=False: the caller audits the whole cancel, producers/cancel.py)."""
    import socket
    import threading
    import uuid
    from datetime import UTC

    from jobstream.config.topics import main_topic, scheduled_topic
    from jobstream.consumers.ops.audit import who, write_audit
    from jobstream.producers.errors import PublishError, check_id, check_key
    from jobstream.schemas.partitioner import partition_for

    check_id("job_id", job_id)
    if key is not None:
        check_key(key)
    main = main_topic(job_type, pub.settings.jobs.get(job_type))
    topic = scheduled_topic(main)
    part = partition_for((key or job_id).encode("utf-8"), pub._partition_count(main))
    done = threading.Event()
    errors: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        errors.append(err)
        done.set()

    pub.send(topic, job_id.encode("utf-8"), None, [], partition=part, on_delivery=on_delivery,
             check_size=False)
    deadline = time.monotonic() + timeout
    while not done.is_set():
        if time.monotonic() > deadline:
            raise PublishError(f"cancel of job {job_id}: no acknowledgement within {timeout}s")
        pub.producer.poll(0.05)
    if errors[0] is not None:
        raise PublishError(f"cancel of job {job_id}: {errors[0].str()}")
    if not audit:
        return
    write_audit(pub.settings, {
        "id": uuid.uuid4().hex,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "user": who(),
        "host": socket.gethostname(),
        "command": "jobs cancel",
        "target": job_type,
        "job_id": job_id,
        "key": key,
        "destination": f"{topic}[{part}]",
        "status": "completed",
    })
