"""The job lookup page: a job id (and its key) -> its state and timeline, read the way
`jobstream jobs show` reads it (producers/status.py)."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import HTMLResponse

from jobstream.consumers.ui.web import PageError, console, render
from jobstream.schemas.lifecycle import describe

_MAX_ID = 200


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    if len(value) > _MAX_ID or not value.isprintable():
        raise PageError(400, f"{name} must be printable text of 1-{_MAX_ID} characters")
    return value


def lookup_page(request: Request) -> HTMLResponse:
    from jobstream.producers.errors import InvalidJob
    from jobstream.producers.status import JobLookupError, status

    c = console(request)
    job_types = c.kafka.job_types()
    job_type, job_id, key = (_text(request, n) for n in ("job_type", "job_id", "key"))
    found = None
    if job_type is not None or job_id is not None:
        if job_type not in job_types:
            raise PageError(404, f"unknown job type {job_type!r}: pick one of the list")
        if job_id is None:
            raise PageError(400, "job_id is required")
        try:
            found = status(c.settings, job_type, job_id, key, timeout=10)
        except InvalidJob as e:
            raise PageError(400, str(e)) from None
        except JobLookupError as e:
            raise PageError(502, f"cannot look the job up: {e}") from None
    events = [{"rec": r, "detail": describe(r, result_chars=300)}
              for r in (found.events if found else [])]
    result = json.dumps(found.result, ensure_ascii=False, indent=2) \
        if found is not None and found.has_result else None
    return render(request, "job.html", job_types=sorted(job_types), job_type=job_type,
                  job_id=job_id, key=key, job=found, events=events, result=result)
