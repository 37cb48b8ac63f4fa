"""`jobstream jobs show|wait|cancel`: one job's state and timeline, read from its topics; the
cancel of a queued, scheduled or retrying job (producers/cancel.py)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from jobstream.config.durations import parse_duration
from jobstream.config.settings import Settings
from jobstream.consumers.cli.common import err, out
from jobstream.consumers.cli.dlq import _errors, _print_table, _settings
from jobstream.schemas.lifecycle import JobStatus, chain_stop, describe, when

# `jobs wait` exit codes besides 0 (succeeded) and 1 (an error): scripts tell them apart.
EXIT_FAILED = 3  # dead-lettered or cancelled
EXIT_TIMEOUT = 124  # still not final, as timeout(1) exits
# `jobs cancel` exit codes besides 0 (cancelled) and 1 (an error).
EXIT_ALREADY_FINAL = 3  # succeeded, dead-lettered or cancelled before: nothing changed
EXIT_UNKNOWN = 4  # no record of the job: nothing written

jobs_app = typer.Typer(
    help="Look a job up: its state, attempts, errors and result.", no_args_is_help=True,
    epilog="Example: jobstream jobs show orders.confirmation 0f8e5c1a --key o-1",
)

JobType = Annotated[str, typer.Argument(help="The job type, e.g. orders.confirmation.")]
JobId = Annotated[str, typer.Argument(help="The job id publish returned.")]
Key = Annotated[str | None, typer.Option(
    help="The key the job was published with: only its partition is read. Without it the "
         "partition of the job's id is read first (publish's default key), then every other.")]
Since = Annotated[str | None, typer.Option(
    help="Read only records from this time on (ISO 8601 or relative, e.g. -1d): quicker in "
         "a long history; older records of the job are not seen.")]
AsJson = Annotated[bool, typer.Option("--json", help="The status as one JSON object.")]


@contextmanager
def _lookup_errors() -> Iterator[None]:
    from jobstream.producers.errors import InvalidJob
    from jobstream.producers.status import JobLookupError

    try:
        with _errors():
            yield
    except (JobLookupError, InvalidJob) as e:
        err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)


def _settings_for(job_type: str) -> Settings:
    """The settings, once the job type is known and the brokers answer."""
    from jobstream.consumers.cli.errors import fail
    from jobstream.schemas.registry import SchemaRegistry, UnknownJobType

    s = _settings()
    try:
        SchemaRegistry.from_dirs(s.schema_dirs).latest(job_type)
    except UnknownJobType:
        fail(f"unknown job type {job_type!r}: no schema for it in {list(map(str, s.schema_dirs))}")
    return s


@jobs_app.command("show", epilog="Example: jobstream jobs show reports.generate 0f8e5c1a --json")
def jobs_show(job_type: JobType, job_id: JobId, key: Key = None, since: Since = None,
              as_json: AsJson = False) -> None:
    """The job's state and its timeline: each attempt, retry, dead letter, replay and result."""
    from jobstream.producers.status import status

    since_ms = _since_ms(since)
    with _lookup_errors():
        st = status(_settings_for(job_type), job_type, job_id, key, since_ms=since_ms)
    _print(st, as_json)


def _since_ms(since: str | None) -> int | None:
    from jobstream.consumers.cli.errors import fail
    from jobstream.consumers.ops.dlq import parse_time, to_ms

    if since is None:
        return None
    try:
        return int(to_ms(parse_time(since)))
    except ValueError as e:
        fail(f"--since {since!r}: {e}")


@jobs_app.command("wait", epilog="Example: jobstream jobs wait reports.generate 0f8e5c1a "
                                 "--timeout 2m")
def jobs_wait(
    job_type: JobType, job_id: JobId, key: Key = None,
    timeout: Annotated[str, typer.Option(help="How long to wait, e.g. 30s, 5m.")] = "30s",
    since: Since = None, as_json: AsJson = False,
) -> None:
    """Wait until the job succeeded (exit 0), was dead-lettered or cancelled (exit 3); exit 124
    when it is still not done after --timeout."""
    from jobstream.consumers.cli.errors import fail
    from jobstream.producers.status import WaitTimeout, wait

    try:
        seconds = parse_duration(timeout)
    except ValueError as e:
        fail(f"--timeout: {e}")
    if seconds <= 0:
        fail(f"--timeout: must be above zero, got {timeout!r}")
    since_ms = _since_ms(since)
    with _lookup_errors():
        try:
            st = wait(_settings_for(job_type), job_type, job_id, key, timeout=seconds,
                      since_ms=since_ms)
        except WaitTimeout as e:
            _print(e.status, as_json)
            err.print(f"timed out: {e}", highlight=False, markup=False)
            sys.exit(EXIT_TIMEOUT)
    _print(st, as_json)
    if st.state != "succeeded":
        sys.exit(EXIT_FAILED)


@jobs_app.command("cancel", epilog="Example: jobstream jobs cancel reports.generate 0f8e5c1a "
                                   "--key customer-42")
def jobs_cancel(
    job_type: Annotated[str | None, typer.Argument(
        help="The job type, e.g. orders.confirmation (with --batch: optional).")] = None,
    job_ids: Annotated[list[str] | None, typer.Argument(
        help="The job ids publish returned.")] = None,
    key: Key = None, as_json: AsJson = False,
    confirm_timeout: Annotated[str, typer.Option(
        help="How long to wait for the workers to confirm they have read the cancel.")] = "10s",
    batch: Annotated[str | None, typer.Option(
        help="Cancel the pending members of this batch (its id from batch()).")] = None,
) -> None:
    """Cancel queued, scheduled or retrying jobs: a cancel entry in the ledger makes every
    worker skip the job (a delayed job's T.scheduled entry also gets a tombstone); audited. A
    running attempt is not stopped, but no further attempt runs. With --batch, the batch's
    members not yet final. Exit 0: cancelled; 3: a job had already succeeded, was
    dead-lettered or cancelled (nothing changed); 4: no record of a job."""
    from jobstream.consumers.cli.errors import fail
    from jobstream.producers.errors import PublishError
    from jobstream.producers.publisher import Publisher

    if batch is None and (job_type is None or not job_ids):
        fail("give a job type and job ids, or --batch BATCH_ID")
    if batch is not None and (job_ids or key is not None):
        fail("--batch: give no job ids or --key with it (the batch names its members)")
    if key is not None and job_ids and len(job_ids) > 1:
        fail("--key: give one job id with it (each job's key picks its partition)")
    try:
        wait_s = parse_duration(confirm_timeout, allow_zero=True)
    except ValueError as e:
        fail(f"--confirm-timeout: {e}")
    with _lookup_errors():
        try:
            s = _settings_for(job_type) if job_type else _settings()
            with Publisher.from_settings(s) as pub:
                if batch is not None:
                    results = pub.cancel_batch(batch, confirm_timeout=wait_s,
                                               job_type=job_type)
                    if not as_json:
                        out.print(Text(f"batch {batch}: {len(results)} member(s) not final"))
                else:
                    assert job_type is not None and job_ids
                    results = pub.cancel_many(job_type, [(j, key) for j in job_ids],
                                              confirm_timeout=wait_s)
        except PublishError as e:
            err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
            sys.exit(1)
    from jobstream.producers.cancel import describe

    for result in results:
        if as_json:
            sys.stdout.write(describe(result) + "\n")
        else:
            out.print(Text(result.message))
    outcomes = {r.outcome for r in results}
    if "unknown" in outcomes:
        sys.exit(EXIT_UNKNOWN)
    if "already_final" in outcomes:
        sys.exit(EXIT_ALREADY_FINAL)


def _print(st: JobStatus, as_json: bool) -> None:
    if as_json:
        data = asdict(st)
        data["final"] = st.final
        sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
        return
    line = f"{st.job_type} {st.job_id}: {st.state}"
    if st.attempts:
        line += f" after {st.attempts} attempt{'s' if st.attempts > 1 else ''}"
    if st.due_at:
        line += f", next run at {when(st.due_at)} UTC"
    out.print(Text(line))
    if st.state == "unknown":
        out.print("  no record of it: a wrong id or key, or older than the history retention "
                  "and the ledger TTL")
    for rec in st.events:
        if rec.get("event") == "cancelled":
            out.print(Text(f"  cancelled by {rec.get('user')} at {when(rec.get('at'))} UTC"
                           f" ({rec.get('reason', 'jobs cancel')})"), soft_wrap=True)
        elif rec.get("event") == "replayed":
            out.print(Text(f"  replayed by {rec.get('user')} at {when(rec.get('at'))} UTC "
                           f"from {rec.get('from')}"), soft_wrap=True)
    if st.has_result:
        out.print(Text("  result: " + json.dumps(st.result, ensure_ascii=False)))
    if st.last_error and st.state != "succeeded":
        e = st.last_error
        out.print(Text(f"  last error: {e.get('category')}: {e.get('class')}: {e.get('message')}"))
    found = f"{st.key} (partition {st.partition})" if st.key is not None else ""
    for label, value in (("key", found), ("parent", st.parent_job_id), ("batch", st.batch_id),
                         ("trace", st.trace_id),
                         ("children", ", ".join(st.children)),
                         ("chain", chain_stop(st.chain) if st.chain else "")):
        if value:
            out.print(Text(f"  {label}: {value}"))
    if not st.events:
        return
    table = Table("at (UTC)", "event", "attempt", "outcome", "worker", "ms", "detail",
                  title="history")
    for rec in st.events:
        table.add_row(*(Text(str(v)) for v in (
            when(rec.get("at")), rec.get("event", ""), rec.get("attempt", ""),
            rec.get("outcome", ""), rec.get("worker", ""), rec.get("duration_ms", ""),
            describe(rec))))
    _print_table(table)
