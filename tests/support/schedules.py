"""Helpers of the recurring-schedule tests (tests/integration/test_schedules.py,
tests/chaos/test_schedules_sigkill.py): schedules in a stack's settings, the slots fired, the
owner."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from jobstream.schemas import wire
from tests.support.harness import Stack


def every_second(stack: Stack, catch_up: str = "all", seq: int = 1) -> dict[str, Any]:
    return {"job_type": stack.job_type, "cron": "* * * * * *", "payload": {"seq": seq},
            "catch_up": catch_up}


def add_schedules(stack: Stack, schedules: dict[str, dict[str, Any]]) -> None:
    """Write the schedules into the stack's settings file (the workers read it)."""
    data = yaml.safe_load(stack.config_path.read_text())
    data["schedules"] = schedules
    stack.config_path.write_text(yaml.safe_dump(data))


def env_schedules(schedules: dict[str, dict[str, Any]]) -> dict[str, str]:
    """A worker's own definitions (the environment wins over the file)."""
    return {"JOBSTREAM_SCHEDULES": json.dumps(schedules)}


def slot_id_of(name: str, job_id: str) -> str | None:
    """The slot text of a firing of `name`, None for another job (or a manual trigger)."""
    prefix = f"sched:{name}:"
    if not job_id.startswith(prefix) or job_id.startswith(prefix + "manual:"):
        return None
    return job_id[len(prefix):]


def published(stack: Stack, name: str) -> Counter[str]:
    """Slot -> how many committed records of its job T holds."""
    c: Counter[str] = Counter()
    for m in stack.read_topic(stack.topics.main, timeout=30):
        s = slot_id_of(name, wire.decode_headers(m.headers()).get(wire.JOB_ID, ""))
        if s:
            c[s] += 1
    return c


def lateness_ms(stack: Stack, name: str) -> dict[str, int]:
    """Slot -> ms from the slot to its job's record on T (the broker's append time)."""
    out: dict[str, int] = {}
    for m in stack.read_topic(stack.topics.main, timeout=30):
        s = slot_id_of(name, wire.decode_headers(m.headers()).get(wire.JOB_ID, ""))
        if s:
            out[s] = m.timestamp()[1] - seconds([s])[0] * 1000
    return out


def ran(stack: Stack, name: str) -> dict[str, list[dict[str, Any]]]:
    """Slot -> the sink's runs of its job."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in stack.runs():
        s = slot_id_of(name, r["job_id"])
        if s:
            out.setdefault(s, []).append(r)
    return out


def seconds(slots: list[str]) -> list[int]:
    return sorted(int(datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                      .timestamp()) for s in slots)


def gaps(slots: list[str]) -> list[tuple[int, int]]:
    """(after, before) of every hole in a run of per-second slots."""
    t = seconds(slots)
    return [(a, b) for a, b in itertools.pairwise(t) if b - a > 1]


def events(log: Path, event: str) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if f'"{event}"' in line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def is_owner(log: Path) -> bool:
    """The worker of this log owns jobstream.schedules now (its last assignment event)."""
    evs = [e for e in events(log, "schedules_assigned") + events(log, "schedules_revoked")]
    evs.sort(key=lambda e: e.get("timestamp", ""))
    return bool(evs) and evs[-1]["event"] == "schedules_assigned" and bool(evs[-1]["owner"])


def wait_owner(stack: Stack, logs: list[Path], timeout: float = 60) -> Path:
    """The log of the one worker that owns jobstream.schedules, once every worker of `logs`
    has had its assignment (so no join still to come moves the partition) and the owner has
    read the topic back."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(events(log, "schedules_assigned") for log in logs):
            owners = [log for log in logs if is_owner(log)]
            if len(owners) == 1 and events(owners[0], "schedules_restored"):
                return owners[0]
        time.sleep(0.2)
    raise AssertionError(f"no worker owns jobstream.schedules after {timeout}s; logs in "
                         f"{stack.tmp}")
