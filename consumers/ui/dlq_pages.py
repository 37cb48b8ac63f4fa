"""The DLQ browser: list with the `dlq list` filters, one record (headers, payload with PII
masked, stack), and the write actions: replay (selected or by filter; a confirm step with a
dry-run count first) and unmask. Writes need credentials and the form's CSRF token."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from jobstream.consumers.ops import dlq
from jobstream.consumers.ops.dlq import DeadLetter, DlqError, Filters
from jobstream.consumers.ui import actions
from jobstream.consumers.ui.web import (
    PageError,
    console,
    int_param,
    job_type_of,
    render,
    write_form,
)
from jobstream.schemas import wire
from jobstream.schemas.registry import SchemaRegistry

FILTER_FIELDS = ("since", "until", "error_class", "category", "key", "job_id", "limit")
DEFAULT_LIMIT = 50


def filters_from(params: Any) -> tuple[Filters, dict[str, str]]:
    """The filters a query string or form gives, and the fields as typed (to show them again)."""
    typed = {f: str(params.get(f) or "").strip()[:500] for f in FILTER_FIELDS}
    limit = int_param(typed["limit"], "limit", 1, 10_000, default=DEFAULT_LIMIT)
    typed["limit"] = str(limit)
    try:
        return Filters(
            since=dlq.parse_time(typed["since"]) if typed["since"] else None,
            until=dlq.parse_time(typed["until"]) if typed["until"] else None,
            error_class=typed["error_class"] or None, category=typed["category"] or None,
            key=typed["key"] or None, job_id=typed["job_id"] or None, limit=limit,
            since_text=typed["since"] or None), typed
    except DlqError as e:
        raise PageError(400, str(e)) from None


def _topic(request: Request, name: str) -> str:
    view = console(request).kafka.view()
    t = view.jobs[name].dlq
    if t not in view.topics:
        raise PageError(404, f"job type {name}: its dead-letter topic {t} does not exist "
                             "(create it with `jobstream topics apply`)")
    return t


def dlq_index(request: Request) -> HTMLResponse:
    c = console(request)
    view = c.kafka.view()
    rows = [(n, jt.dlq, len(c.dlq.records(jt.dlq, view.offsets.bounds(jt.dlq)))
             if jt.dlq in view.topics else 0, jt.dlq in view.topics)
            for n, jt in view.jobs.items()]
    return render(request, "dlq_index.html", rows=rows)


def dlq_list(request: Request) -> HTMLResponse:
    c = console(request)
    name = job_type_of(request)
    f, typed = filters_from(request.query_params)
    topic = _topic(request, name)
    sel = c.dlq.select(topic, f)
    return render(request, "dlq_list.html", name=name, topic=topic, sel=sel, typed=typed,
                  categories=dlq.CATEGORIES, by_class=sel.by_class.most_common())


def _position(request: Request) -> tuple[int, int]:
    p = int_param(str(request.path_params.get("partition", "")), "partition", 0, 100_000)
    o = int_param(str(request.path_params.get("offset", "")), "offset")
    return p, o


def _record_page(request: Request, name: str, dl: DeadLetter, unmask: bool) -> HTMLResponse:
    c = console(request)
    payload = dl.payload(SchemaRegistry.from_dirs(c.settings.schema_dirs), unmask)
    text = payload if isinstance(payload, str) else json.dumps(payload, indent=2,
                                                               ensure_ascii=False)
    headers = [(k, v) for k, v in dl.headers.items() if k != wire.ERROR_STACK]
    resp = render(request, "dlq_record.html", name=name, dl=dl, headers=headers,
                  payload=text, decoded=not isinstance(payload, str), unmask=unmask,
                  hex=dl.hex_preview())
    if unmask:
        resp.headers["cache-control"] = "no-store"  # PII in clear: no copy on disk
    return resp


def dlq_record(request: Request) -> HTMLResponse:
    name = job_type_of(request)
    p, o = _position(request)
    try:
        dl = console(request).dlq.one(_topic(request, name), p, o)
    except DlqError as e:
        raise PageError(404, str(e)) from None
    return _record_page(request, name, dl, unmask=False)


async def dlq_unmask(request: Request) -> HTMLResponse:
    user, _ = await write_form(request)
    name = job_type_of(request)
    p, o = _position(request)
    from starlette.concurrency import run_in_threadpool

    def work() -> DeadLetter:
        c = console(request)
        try:
            dl = c.dlq.one(_topic(request, name), p, o)
        except DlqError as e:
            raise PageError(404, str(e)) from None
        actions.audit_unmask(c.settings, dl, user)  # before any PII leaves
        return dl

    dl = await run_in_threadpool(work)
    return _record_page(request, name, dl, unmask=True)


def _selected(request: Request, topic: str, values: list[str]) -> list[DeadLetter]:
    if len(values) > actions.MAX_SELECTED:
        raise PageError(400, f"{len(values)} records selected; at most {actions.MAX_SELECTED}")
    wanted = set()
    for v in values:
        try:
            wanted.add(dlq.parse_position(v))
        except DlqError as e:
            raise PageError(400, str(e)) from None
    found = [dl for dl in console(request).dlq.records(topic)
             if (dl.partition, dl.offset) in wanted]
    missing = wanted - {(dl.partition, dl.offset) for dl in found}
    if missing:
        p, o = sorted(missing)[0]
        raise PageError(404, f"no dead letter at {topic} {p}:{o} ({len(missing)} of the "
                             "selected positions hold none)")
    return sorted(found, key=lambda dl: (dl.partition, dl.offset))


async def dlq_replay(request: Request) -> HTMLResponse:
    user, form = await write_form(request)
    name = job_type_of(request)
    mode = str(form.get("mode") or "")
    if mode not in ("selected", "filtered"):
        raise PageError(400, f"mode must be selected or filtered, got {mode[:40]!r}")
    f, typed = filters_from(form)
    sel_values = [str(v) for v in form.getlist("sel")]
    confirmed = form.get("confirm") == "yes"
    from starlette.concurrency import run_in_threadpool

    def work() -> dict[str, Any]:
        c = console(request)
        topic = _topic(request, name)
        if mode == "selected":
            records = _selected(request, topic, sel_values)
            if not records:
                raise PageError(400, "no records selected: tick at least one")
            if not confirmed:
                return {"count": len(records), "records": records}
            return {"result": actions.replay_selected(c.settings, name, records, user)}
        try:  # every match: the list's limit only says how many rows it shows
            result = actions.replay_filtered(c.settings, name, replace(f, limit=None), user,
                                             dry_run=not confirmed)
        except DlqError as e:
            raise PageError(400, str(e)) from None
        return {"count": result.matched, "result": None if not confirmed else result}

    try:
        out = await run_in_threadpool(work)
    except DlqError as e:
        raise PageError(502, str(e)) from None
    ctx: dict[str, Any] = dict(name=name, mode=mode, typed=typed, sel=sel_values,
                               filters=replace(f, limit=None).describe())
    if not confirmed:
        return render(request, "dlq_confirm.html", count=out["count"],
                      records=out.get("records", []), **ctx)
    return render(request, "dlq_done.html", result=out["result"], **ctx)
