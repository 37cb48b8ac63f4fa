"""`jobstream publish`: validate, encode and publish one job."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from jobstream.consumers.cli.common import connected, fail, out, settings


def publish(
    job_type: Annotated[str, typer.Argument(help="Job type, e.g. orders.confirmation.")],
    payload: Annotated[str, typer.Option("--json", help="The payload as a JSON object.")],
    key: Annotated[str | None, typer.Option(help="Partition key (default: the job id).")] = None,
    job_id: Annotated[
        str | None, typer.Option(help="Idempotency key (default: generated).")
    ] = None,
    parent_job_id: Annotated[str | None, typer.Option(help="Job that caused this one.")] = None,
    delay: Annotated[str | None, typer.Option(
        help="Run it this much later, e.g. 10m, 2h (a delayed job).")] = None,
    at: Annotated[str | None, typer.Option(
        "--at", help="Run it at this time: ISO 8601 with a UTC offset, e.g. "
        "2026-12-24T18:00:00+01:00.")] = None,
    priority: Annotated[str | None, typer.Option(
        help="The job type's priority lane, e.g. high (docs/priorities.md).")] = None,
) -> None:
    """Validate, encode and publish one job; prints its job id. With --delay or --at it
    waits in T.scheduled until due."""
    from jobstream.producers.delayed import due_ms
    from jobstream.producers.errors import InvalidJob, check_id
    from jobstream.producers.publisher import Publisher

    data = _json_object(payload, "--json")
    run_at = _run_at(at) if at is not None else None
    if delay is not None and run_at is not None:
        fail("give --delay or --at, not both")
    try:  # the delay's checks before connecting; the job type's own limit is checked again
        due_ms(delay, run_at, float("inf"))
    except InvalidJob as e:
        fail(f"--{'delay' if delay is not None else 'at'}: {e}")
    # Local checks before connecting: a wrong id must not wait out a broker timeout first.
    for option, value in (("--job-id", job_id), ("--parent-job-id", parent_job_id)):
        if value is not None:
            try:
                check_id(option, value)
            except ValueError as e:
                fail(str(e))
    if key is not None and not _is_unicode(key):
        fail(f"--key holds a lone surrogate, which is not valid Unicode: {key!a}")
    conf = settings()
    if priority is not None:
        from jobstream.producers.lanes import check_lane

        try:
            check_lane(job_type, conf.job(job_type), priority)
        except InvalidJob as e:
            fail(f"--priority: {e}")
    with Publisher.from_settings(connected(conf)) as pub:
        jid = pub.publish(job_type, data, key=key, job_id=job_id, parent_job_id=parent_job_id,
                          delay=delay, run_at=run_at, priority=priority)
    out.print(jid, highlight=False)


def _run_at(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--at {text!r} is not an ISO 8601 time, e.g. 2026-12-24T18:00:00+01:00")
    if when.tzinfo is None:
        fail(f"--at {text!r} has no UTC offset: add one, e.g. {text}+00:00 or {text}Z")
    return when


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_object(text: str, option: str) -> dict[str, Any]:
    """A JSON object given on the command line, or one error line naming the option."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        fail(f"{option} is not valid JSON: {e}")
    except RecursionError:
        fail(f"{option} is nested too deeply to be a job payload")
    if not isinstance(data, dict):
        fail(f"{option} must be a JSON object")
    # A lone surrogate (a \ud800 escape, or argument bytes that are not UTF-8) parses but
    # cannot be encoded. Iterative: the JSON may be nested almost to the recursion limit.
    stack: list[tuple[str, Any]] = [("payload", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str) and not _is_unicode(value):
            fail(f"{option}: {path} holds a lone surrogate, which is not valid Unicode: "
                 f"{value!a} (a \\ud800-style escape, or bytes that are not UTF-8)")
        if isinstance(value, dict):
            for k, v in value.items():
                if not _is_unicode(k):
                    fail(f"{option}: the key {k!a} in {path} is not valid Unicode")
                stack.append((f"{path}.{k}", v))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
    return data
