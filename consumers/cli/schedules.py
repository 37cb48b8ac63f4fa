"""`jobstream schedules list|pause|resume|trigger`: the recurring schedules (printing only; the
work is in consumers/scheduling/control.py)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from jobstream.config.settings import Settings
from jobstream.consumers.cli.common import out
from jobstream.consumers.cli.dlq import _errors, _print_table, _settings

schedules_app = typer.Typer(
    help="List, pause, resume and trigger the recurring (cron) schedules.", no_args_is_help=True,
    epilog="Example: jobstream schedules list",
)

NameArg = Annotated[str, typer.Argument(help="The schedule's name (settings `schedules.<name>`, "
                                             "or the job type of @job(..., schedule=)).")]
AppOpt = Annotated[str | None, typer.Option(
    "--app", help="Job module whose @job(..., schedule=) schedules count too (default "
    "JOBSTREAM_APP).")]
GroupOpt = Annotated[str | None, typer.Option(
    "--group", help="Worker group whose schedules these are (default worker.group_id).")]


def _defs(s: Settings, app: str | None) -> dict[str, Any]:
    from jobstream.consumers.scheduling.control import definitions

    return definitions(s, app)


def _when(t: datetime | str | None) -> str:
    if t is None:
        return "-"
    return t if isinstance(t, str) else t.strftime("%Y-%m-%dT%H:%M:%SZ")


@schedules_app.command("list", epilog="Example: jobstream schedules list --json")
def schedules_list(app: AppOpt = None, group: GroupOpt = None,
                   as_json: Annotated[bool, typer.Option("--json", help="One JSON object per "
                                                         "schedule, a line each.")] = False
                   ) -> None:
    """Every schedule: cron, zone, next slot, last slot fired, paused (times in UTC)."""
    from jobstream.consumers.scheduling.control import rows

    with _errors():
        s = _settings()
        g = group or s.worker.group_id
        found = rows(s, _defs(s, app), g)
    if as_json:
        for r in found:
            sys.stdout.write(json.dumps({
                "name": r.name, "job_type": r.schedule.cfg.job_type if r.schedule else None,
                "cron": r.schedule.cfg.cron if r.schedule else None,
                "timezone": r.schedule.cfg.timezone if r.schedule else None,
                "next_slot": _when(r.next_slot) if r.next_slot else None,
                "last_fired": r.state.last_slot if r.state else None,
                "paused": bool(r.state and r.state.paused),
                "enabled": bool(r.schedule and r.schedule.enabled),
                "version": r.state.version if r.state else None,
            }) + "\n")
        return
    if not found:
        out.print("no schedules (settings `schedules`, or @job(..., schedule=) in --app)")
        return
    t = Table("name", "job type", "cron", "zone", "next slot (UTC)", "last fired (UTC)",
              "paused", "note")
    t.columns[0].no_wrap = True
    for r in found:
        note = ""
        if r.schedule is None:
            note = "not defined here"
        elif not r.schedule.enabled:
            note = "disabled"
        elif r.state is not None and r.state.removed:
            note = "removed by a newer deploy"
        cfg = r.schedule.cfg if r.schedule else None
        t.add_row(*(Text(v) for v in (
            r.name, cfg.job_type if cfg else "-", cfg.cron if cfg else "-",
            cfg.timezone if cfg else "-", _when(r.next_slot),
            _when(r.state.last_slot if r.state else None),
            "yes" if r.state and r.state.paused else "no", note)))
    _print_table(t)


def _set_paused(name: str, app: str | None, group: str | None, paused: bool) -> None:
    from jobstream.consumers.scheduling.control import set_paused

    with _errors():
        s = _settings()
        g = group or s.worker.group_id
        set_paused(s, _defs(s, app), name, g, paused)
    out.print(Text(f"schedule {name}: {'paused' if paused else 'resumed'}"))


@schedules_app.command("pause", epilog="Example: jobstream schedules pause reports.daily")
def schedules_pause(name: NameArg, app: AppOpt = None, group: GroupOpt = None) -> None:
    """Stop firing the schedule (its slots pass unfired) until `resume`; audited."""
    _set_paused(name, app, group, True)


@schedules_app.command("resume", epilog="Example: jobstream schedules resume reports.daily")
def schedules_resume(name: NameArg, app: AppOpt = None, group: GroupOpt = None) -> None:
    """Fire the schedule again from its next slot on (slots passed while paused are not caught
    up); audited."""
    _set_paused(name, app, group, False)


@schedules_app.command("trigger", epilog="Example: jobstream schedules trigger reports.daily")
def schedules_trigger(name: NameArg, app: AppOpt = None) -> None:
    """Publish one job of the schedule now, with its own job id (`sched:<name>:manual:<id>`);
    its slots are not affected; audited."""
    from jobstream.consumers.scheduling.control import trigger

    with _errors():
        s = _settings()
        jid = trigger(s, _defs(s, app), name)
    out.print(Text(f"schedule {name}: triggered, job id {jid}"), soft_wrap=True)
