"""The console's Starlette app: routes, security headers, error pages.

Every error becomes a page with a message (a 4xx for bad input, 401/403 for refused writes,
502 when Kafka does not answer); an unexpected one is logged with its traceback and shown as
"internal error" without it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobstream.config.logging import get_logger
from jobstream.config.settings import Settings, SettingsError
from jobstream.consumers.ops.dlq import DlqError
from jobstream.consumers.ui import dlq_pages, lookup, pages, schedules_page
from jobstream.consumers.ui.audit_view import AuditView
from jobstream.consumers.ui.auth import Auth, AuthError
from jobstream.consumers.ui.dlq_view import DlqView
from jobstream.consumers.ui.kafka_view import KafkaView
from jobstream.consumers.ui.scrape import Scraper
from jobstream.consumers.ui.web import TEMPLATES, Console, PageError, console, error_page

log = get_logger("jobstream.ui")

# No script at all; styles from our own file; inline SVG needs nothing more.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request,
                       call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        resp = await call_next(request)
        resp.headers.update(SECURITY_HEADERS)
        return resp


def login(request: Request) -> Response:
    """A link the browser follows to sign in: 401 with a basic-auth challenge until it sends
    valid credentials, then back to the page it came from."""
    c = console(request)
    if not c.auth.enabled:
        return error_page(request, 404, "sign-in is off: no credentials are configured "
                                        "(ui.auth.passwords or ui.auth.tokens)")
    if c.auth.user(request) is None:
        resp = error_page(request, 401, "sign in with a user name and password from "
                                        "ui.auth.passwords")
        resp.headers["www-authenticate"] = 'Basic realm="jobstream console", charset="UTF-8"'
        return resp
    back = request.query_params.get("next", "/")
    return RedirectResponse(back if back.startswith("/") and not back.startswith("//") else "/",
                            status_code=303)


def healthz(request: Request) -> Response:
    """The process serves pages (it does not ask Kafka: a probe must not load the brokers)."""
    return PlainTextResponse("ok\n")


async def _page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    return error_page(request, exc.status, exc.message)


async def _auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    resp = error_page(request, exc.status, exc.message)
    if exc.status == 401 and console(request).auth.enabled:
        resp.headers["www-authenticate"] = 'Basic realm="jobstream console", charset="UTF-8"'
    return resp


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"no such page: {request.url.path[:200]}",
               405: f"{request.method} is not allowed here"}.get(exc.status_code, exc.detail)
    return error_page(request, exc.status_code, message)


async def _dlq_error(request: Request, exc: Exception) -> Response:
    return error_page(request, 502, str(exc))  # mostly "broker unreachable at ..."


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("console page failed", path=request.url.path, exc_info=exc)
    return HTMLResponse("<!doctype html><title>error</title><h1>500 internal error</h1>"
                        "<p>The console hit an unexpected error; its log has the details.</p>",
                        status_code=500, headers=SECURITY_HEADERS)


def _warm_up(state: Console) -> None:
    """Read every DLQ once in the background at start, so that the first visitor does not pay
    for the cold read (10,000 dead letters: a few tenths of a second)."""
    from jobstream.consumers.ui.pages import dead_letters

    try:
        dead_letters(state, state.kafka.view())
    except Exception as e:  # the broker may be down at start: pages will say so
        log.warning("console warm-up failed", error=str(e))


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    threading.Thread(target=_warm_up, args=(app.state.console,), name="ui-warm-up",
                     daemon=True).start()
    yield


def create_app(settings: Settings) -> Starlette:
    state = Console(settings, KafkaView(settings), DlqView(settings), Scraper(settings),
                    Auth(settings.ui.auth), AuditView(settings))
    routes = [
        Route("/", pages.overview),
        Route("/jobs/{job_type}", pages.job_type_page),
        Route("/dlq", dlq_pages.dlq_index),
        Route("/dlq/{job_type}", dlq_pages.dlq_list),
        Route("/dlq/{job_type}/replay", dlq_pages.dlq_replay, methods=["POST"]),
        Route("/dlq/{job_type}/{partition}/{offset}", dlq_pages.dlq_record),
        Route("/dlq/{job_type}/{partition}/{offset}/unmask", dlq_pages.dlq_unmask,
              methods=["POST"]),
        Route("/schedules", schedules_page.schedules_page),
        Route("/schedules/{name}/pause", schedules_page.schedule_pause, methods=["POST"]),
        Route("/schedules/{name}/resume", schedules_page.schedule_resume, methods=["POST"]),
        Route("/schedules/{name}/trigger", schedules_page.schedule_trigger, methods=["POST"]),
        Route("/audit", pages.audit_page),
        Route("/lookup", lookup.lookup_page),
        Route("/login", login),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=TEMPLATES / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes, middleware=[Middleware(SecurityHeaders)],
        exception_handlers={PageError: _page_error, AuthError: _auth_error,
                            HTTPException: _http_error, DlqError: _dlq_error,
                            SettingsError: _dlq_error, Exception: _internal},
        lifespan=_lifespan,
    )
    app.state.console = state
    return app


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning",
                server_header=False, proxy_headers=False)
