"""What `jobstream schedules` does: read the schedules' state back, pause, resume, trigger;
every write audited (jobstream.audit)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings
from jobstream.config.topics import SCHEDULES_TOPIC
from jobstream.consumers.ops.audit import who, write_audit
from jobstream.consumers.ops.dlq import DlqError
from jobstream.consumers.ops.dlq_reader import Reader
from jobstream.consumers.scheduling import state as states
from jobstream.consumers.scheduling.cron import slot_id
from jobstream.consumers.scheduling.definitions import Schedule
from jobstream.consumers.scheduling.state import State


class ScheduleError(DlqError):
    """An unknown schedule, or one another worker group owns; the message says which."""


@dataclass(frozen=True)
class Row:
    name: str
    schedule: Schedule | None  # None: known only from the topic (another deploy's)
    state: State | None
    next_slot: datetime | None


def read_states(settings: Settings) -> dict[str, State]:
    """Every schedule's state, as the next owner would restore it."""
    if not states.topic_exists(settings):
        return {}
    r = Reader(settings, SCHEDULES_TOPIC, group="jobstream-schedules-reader")
    out: dict[str, State] = {}
    try:
        bounds = r.bounds()
        for rec in r.read({p: lo for p, (lo, _) in bounds.items()},
                          {p: hi for p, (_, hi) in bounds.items()}):
            name = (rec.key or b"").decode("utf-8", "replace")
            new = states.decode(rec.value)
            if new is None:
                out.pop(name, None)
            else:
                out[name] = states.merge(out.get(name), new)
    finally:
        r.consumer.close()
    return out


def rows(settings: Settings, schedules: dict[str, Schedule], group: str,
         now: datetime | None = None) -> list[Row]:
    now = now or datetime.now(UTC)
    st = read_states(settings)
    names = sorted(set(schedules) | {n for n, s in st.items() if s.group == group})
    return [Row(n, schedules.get(n), st.get(n),
                schedules[n].cron.next(now) if n in schedules else None) for n in names]


def _known(schedules: dict[str, Schedule], name: str) -> Schedule:
    s = schedules.get(name)
    if s is None:
        known = ", ".join(sorted(schedules)) or "none"
        raise ScheduleError(f"unknown schedule {name!r} (defined here: {known}; settings "
                            "`schedules`, or @job(..., schedule=) in the --app module)")
    return s


def _write(settings: Settings, name: str, st: State) -> None:
    p = Producer(client_config(settings.kafka, **{"enable.idempotence": True, "acks": "all"}))
    done = threading.Event()
    errors: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        errors.append(err)
        done.set()

    p.produce(SCHEDULES_TOPIC, st.encode(), name.encode(), partition=0, on_delivery=on_delivery)
    deadline = time.monotonic() + 30
    while not done.is_set():
        if time.monotonic() > deadline:
            raise ScheduleError(f"schedule {name!r}: no acknowledgement from the brokers in 30s")
        p.poll(0.05)
    if errors[0] is not None:
        raise ScheduleError(f"schedule {name!r}: {errors[0].str()}")


def _audit(settings: Settings, command: str, name: str, **extra: Any) -> None:
    write_audit(settings, {
        "id": uuid.uuid4().hex,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "user": who(),
        "host": socket.gethostname(),
        "command": command,
        "target": name,
        "destination": SCHEDULES_TOPIC,
        "status": "completed",
        **{k: v for k, v in extra.items() if v is not None},
    })


def definitions(settings: Settings, app: str | None = None) -> dict[str, Schedule]:
    """The schedules this deploy defines: settings `schedules` and, with a job module (`app`,
    default settings `app`), its @job(..., schedule=) ones."""
    from jobstream.consumers.jobs import declared_schedules, load_app
    from jobstream.consumers.scheduling.definitions import collect

    module = app or settings.app
    if module:
        load_app(module)
    return collect(settings, declared_schedules())


def set_paused(settings: Settings, schedules: dict[str, Schedule], name: str, group: str,
               paused: bool, actor: dict[str, str] | None = None) -> State:
    """Write the schedule's state with `paused`; resuming also sets `since` to now, so slots
    that passed while paused are not caught up. `actor`: who, for the audit record (default
    this process's user)."""
    _known(schedules, name)
    states.ensure_topic(settings)
    cur = read_states(settings).get(name)
    if cur is not None and cur.group not in (None, group):
        raise ScheduleError(f"schedule {name!r} belongs to worker group {cur.group!r}, not "
                            f"{group!r} (pass --group)")
    base = cur or State(group=group)
    now = states.now_text()
    via = (actor or {}).get("via", "cli")
    user = (actor or {}).get("user") or who()
    new = replace(base, paused=paused, group=group, by=f"{via}:{user}@{socket.gethostname()}",
                  at=now, since=now if not paused else base.since)
    _write(settings, name, new)
    _audit(settings, "schedules pause" if paused else "schedules resume", name, group=group,
           **(actor or {}))
    return new


def trigger(settings: Settings, schedules: dict[str, Schedule], name: str,
            actor: dict[str, str] | None = None) -> str:
    """Publish one job of the schedule now, with its own id; the job id. `actor`: who, for the
    audit record (default this process's user)."""
    from jobstream.producers.errors import PublishError
    from jobstream.producers.publisher import Publisher

    s = _known(schedules, name)
    jid = f"sched:{name}:manual:{uuid.uuid4().hex}"
    try:
        with Publisher.from_settings(settings) as pub:
            pub.publish(s.cfg.job_type, s.cfg.payload, key=s.cfg.key, job_id=jid)
    except (PublishError, ValueError, KeyError) as e:  # InvalidJob, UnknownJobType included
        raise ScheduleError(f"schedule {name!r}: job type {s.cfg.job_type!r}: {e}") from None
    _audit(settings, "schedules trigger", name, job_id=jid, job_type=s.cfg.job_type,
           at_slot=slot_id(datetime.now(UTC)), **(actor or {}))
    return jid
