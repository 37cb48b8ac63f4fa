"""The recurring schedules a pod knows: `schedules.<name>` settings over `@job(...,
schedule=)` declarations, checked (a bad cron or zone names its schedule), and their version
(a hash of every definition) for the rolling-deploy rule (docs/scheduling.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from jobstream.config.schedules import ScheduleSettings, check_name
from jobstream.config.settings import Settings, SettingsError
from jobstream.consumers.scheduling.cron import Cron


@dataclass(frozen=True)
class Schedule:
    name: str
    cfg: ScheduleSettings
    cron: Cron

    @property
    def enabled(self) -> bool:
        return self.cfg.enabled


def _problem(name: str, e: ValidationError, origin: str) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{origin}.{loc}: {msg}" if loc else f"{origin}: {msg}")
    return f"schedule {name!r}: " + "; ".join(lines)


def collect(settings: Settings, declared: dict[str, dict[str, Any]] | None = None
            ) -> dict[str, Schedule]:
    """Every schedule by name: settings win over a declaration of the same name. Raises
    SettingsError naming the schedule (never a traceback) for a bad declaration."""
    out: dict[str, Schedule] = {}
    problems = []
    for name, opts in sorted((declared or {}).items()):
        if name in settings.schedules:
            continue
        try:
            check_name(name)
            cfg = ScheduleSettings(**opts)
        except ValidationError as e:
            problems.append(_problem(name, e, f"@job({name!r})"))
            continue
        except (ValueError, TypeError) as e:
            problems.append(f"schedule {name!r}: @job({name!r}): {e}")
            continue
        out[name] = Schedule(name, cfg, Cron(cfg.cron, cfg.timezone))
    for name, cfg in settings.schedules.items():
        out[name] = Schedule(name, cfg, Cron(cfg.cron, cfg.timezone))
    if problems:
        raise SettingsError("invalid schedules:\n  " + "\n  ".join(problems))
    return dict(sorted(out.items()))


def version_of(schedules: dict[str, Schedule]) -> str:
    """A hash of every definition: pods of one deploy agree on it, a changed, added or removed
    schedule changes it. 16 hex digits."""
    text = json.dumps({n: s.cfg.model_dump(mode="json") for n, s in schedules.items()},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def job_id(name: str, slot_text: str) -> str:
    """The job id of a slot's firing: the same for every owner that fires it."""
    return f"sched:{name}:{slot_text}"
