"""The schedules page: the recurring schedules of this deploy (settings `schedules`, and the
@job(..., schedule=) ones of settings `app` when set) and any other of the worker group known
from jobstream.schedules, with pause, resume and trigger for a signed-in user (audited with
`via: console`, CSRF-protected like every write)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse

from jobstream.config.schedules import check_name
from jobstream.config.settings import Settings, SettingsError
from jobstream.consumers.scheduling import control
from jobstream.consumers.scheduling.definitions import Schedule
from jobstream.consumers.ui.web import PageError, console, render, write_form


@dataclass(frozen=True)
class Line:
    name: str
    job_type: str
    cron: str
    timezone: str
    next_slot: str
    last_fired: str
    paused: bool
    note: str
    writable: bool  # defined here: the console can pause, resume and trigger it


def _when(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _definitions(settings: Settings) -> dict[str, Schedule]:
    try:
        return control.definitions(settings)
    except SettingsError as e:
        raise PageError(500, f"the schedules of this deploy are not valid: {e}") from None
    except Exception as e:  # the job module (settings `app`) failed to import
        raise PageError(500, f"cannot load the job module {settings.app!r}: {e}") from None


def lines(settings: Settings, now: datetime | None = None) -> list[Line]:
    defs = _definitions(settings)
    out = []
    for r in control.rows(settings, defs, settings.worker.group_id, now):
        cfg = r.schedule.cfg if r.schedule else None
        note = ""
        if r.schedule is None:
            note = "defined by another deploy (pause it with jobstream schedules pause --app)"
        elif not r.schedule.enabled:
            note = "disabled"
        elif r.state is not None and r.state.removed:
            note = "removed by a newer deploy"
        out.append(Line(
            r.name, cfg.job_type if cfg else "-", cfg.cron if cfg else "-",
            cfg.timezone if cfg else "-", _when(r.next_slot),
            (r.state.last_slot or "-") if r.state else "-",
            bool(r.state and r.state.paused), note, r.schedule is not None))
    return out


async def schedules_page(request: Request) -> HTMLResponse:
    c = console(request)
    rows = await run_in_threadpool(lines, c.settings)
    return render(request, "schedules.html", rows=rows, group=c.settings.worker.group_id,
                  done=None)


def _name_of(request: Request) -> str:
    name = str(request.path_params.get("name", ""))
    try:
        return check_name(name[:200])
    except ValueError as e:
        raise PageError(400, str(e)) from None


async def _act(request: Request, action: str) -> HTMLResponse:
    """pause, resume or trigger the schedule of the URL, as the signed-in user."""
    user, _ = await write_form(request)
    name = _name_of(request)
    c = console(request)
    actor = {"user": user, "via": "console"}

    def work() -> tuple[str, list[Line]]:
        defs = _definitions(c.settings)
        try:
            if action == "trigger":
                jid = control.trigger(c.settings, defs, name, actor)
                done = f"schedule {name}: triggered, job id {jid}"
            else:
                control.set_paused(c.settings, defs, name, c.settings.worker.group_id,
                                   action == "pause", actor)
                done = f"schedule {name}: {action}d"
        except control.ScheduleError as e:
            status = 404 if "unknown schedule" in str(e) else 409
            raise PageError(status, str(e)) from None
        return done, lines(c.settings)

    done, rows = await run_in_threadpool(work)
    return render(request, "schedules.html", rows=rows, group=c.settings.worker.group_id,
                  done=done)


async def schedule_pause(request: Request) -> HTMLResponse:
    return await _act(request, "pause")


async def schedule_resume(request: Request) -> HTMLResponse:
    return await _act(request, "resume")


async def schedule_trigger(request: Request) -> HTMLResponse:
    return await _act(request, "trigger")
