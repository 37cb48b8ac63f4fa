"""What every page shares: templates, the rendering of a page and of an error page, and
the parsing of path and query parameters (hostile input ends in a 400 page saying why)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse

from jobstream.config.settings import Settings
from jobstream.consumers.ui.audit_view import AuditView
from jobstream.consumers.ui.auth import Auth
from jobstream.consumers.ui.dlq_view import DlqView
from jobstream.consumers.ui.kafka_view import KafkaView
from jobstream.consumers.ui.scrape import Scraper

TEMPLATES = Path(__file__).parent / "templates"

# The navigation: (path, label).
NAV: list[tuple[str, str]] = [
    ("/", "Overview"),
    ("/lookup", "Find a job"),
    ("/dlq", "Dead letters"),
    ("/schedules", "Schedules"),
    ("/audit", "Audit trail"),
]


class PageError(Exception):
    """Shown as an error page: status and a message for the operator."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Console:
    """The console's state: settings and the readers, shared by every request."""

    settings: Settings
    kafka: KafkaView
    dlq: DlqView
    scraper: Scraper
    auth: Auth
    audit: AuditView


def _fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                  trim_blocks=True, lstrip_blocks=True)
env.filters["ms"] = _fmt_ms
env.filters["num"] = lambda v: "-" if v is None else (f"{v:,.0f}" if isinstance(v, (int, float))
                                                      else str(v))


def console(request: Request) -> Console:
    c: Console = request.app.state.console
    return c


def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    c = console(request)
    user = c.auth.user(request)
    body = env.get_template(template).render(
        nav=NAV, path=request.url.path, user=user, auth_enabled=c.auth.enabled,
        csrf=c.auth.csrf_token(user) if user else "", **ctx)
    return HTMLResponse(body, status_code=status)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    try:
        return render(request, "error.html", status=status, status_code=status, message=message)
    except Exception:  # the error page itself failed: plain text, still no traceback
        return HTMLResponse(f"error {status}: {message}", status_code=status,
                            media_type="text/plain")


def job_type_of(request: Request) -> str:
    jt = str(request.path_params.get("job_type", ""))
    if jt not in console(request).kafka.job_types():
        raise PageError(404, f"unknown job type {jt!r}: it is neither configured (jobs.<type>) "
                             "nor has a schema")
    return jt


def int_param(value: str | None, name: str, lo: int = 0, hi: int = 2**63 - 1,
              default: int | None = None) -> int:
    if value is None or value == "":
        if default is None:
            raise PageError(400, f"{name} is required")
        return default
    if not re.fullmatch(r"[0-9]{1,19}", value):  # ASCII digits only (no other scripts)
        raise PageError(400, f"{name} must be a whole number from {lo} to {hi}, got {value[:40]!r}")
    n = int(value)
    if not lo <= n <= hi:
        raise PageError(400, f"{name} must be from {lo} to {hi}, got {n}")
    return n


async def write_form(request: Request) -> tuple[str, FormData]:
    """The form of a write action and the user allowed to send it (AuthError otherwise)."""
    form = await request.form()
    token = form.get("csrf")
    user = console(request).auth.require_write(request, token if isinstance(token, str) else None)
    return user, form
