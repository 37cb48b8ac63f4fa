"""`jobstream dlq list|show|replay|export` and `jobstream audit list`: printing only; the work
is in consumers/dlq.py and consumers/audit.py."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from config.logging import configure_logging
from config.settings import Settings, load_settings
from consumers import dlq, replay
from producers.connection import ConnectionCheckError, check_connection
from schemas import wire

dlq_app = typer.Typer(help="Inspect, replay and export dead letters.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log of replays and exports.", no_args_is_help=True)

out = Console()
err = Console(stderr=True)

TargetArg = Annotated[
    str, typer.Argument(help="Job type (e.g. orders.confirmation) or a .dlq topic.")]
SinceOpt = Annotated[
    str | None, typer.Option(help="Failed at or after: ISO 8601 or an age (-1h, 30m).")]
UntilOpt = Annotated[str | None, typer.Option(help="Failed before: ISO 8601 or an age (-10m).")]
ClassOpt = Annotated[
    str | None, typer.Option("--error-class", help="Exception class (full or last part).")]
CategoryOpt = Annotated[str | None, typer.Option(help=f"One of {', '.join(dlq.CATEGORIES)}.")]
KeyOpt = Annotated[str | None, typer.Option(help="Record key.")]
JobIdOpt = Annotated[str | None, typer.Option("--job-id", help="Job id.")]


@contextmanager
def _errors() -> Iterator[None]:
    """DlqError -> one 'error:' line and exit 1. Handled here rather than via cli.CliError: under
    `python -m consumers.cli` that class exists twice and main() would not recognise ours. And
    SystemExit, not typer.Exit: with standalone_mode=False click returns Exit's code from app()
    and main() drops it, so the process would exit 0."""
    try:
        yield
    except dlq.DlqError as e:
        err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)


def _settings() -> Settings:
    s = load_settings()
    configure_logging(s.log)  # stderr: stdout stays the command's output
    try:
        # a rejected password says so at once; an absent broker within the CLI's short timeout
        check_connection(s.kafka, timeout=dlq.METADATA_TIMEOUT_S)
    except ConnectionCheckError as e:
        raise dlq.DlqError(str(e)) from None
    return s


def _filters(since: str | None, until: str | None, error_class: str | None, category: str | None,
             key: str | None, job_id: str | None, limit: int | None = None) -> dlq.Filters:
    now = datetime.now(UTC)
    return dlq.Filters(
        since=dlq.parse_time(since, now) if since else None,
        until=dlq.parse_time(until, now) if until else None,
        error_class=error_class, category=category, key=key, job_id=job_id, limit=limit,
    )


def _cut(text: str | None, n: int = 60) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def _short_time(ms: int | None) -> str:
    s = dlq.iso(ms)
    return s[:19].replace("T", " ") if s else "-"


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False)


@dlq_app.command("list")
def dlq_list(
    target: TargetArg,
    since: SinceOpt = None, until: UntilOpt = None, error_class: ClassOpt = None,
    category: CategoryOpt = None, key: KeyOpt = None, job_id: JobIdOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many records.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines only, for scripts.")] = False,
) -> None:
    """List dead letters (oldest first per partition) and count them by error class."""
    with _errors():
        s = _settings()
        f = _filters(since, until, error_class, category, key, job_id, limit)
        t = dlq.resolve_target(s, target)
        rows = sorted(dlq.scan(s, t.dlq, f), key=lambda d: (d.partition, d.offset))
    if as_json:
        for dl in rows:
            sys.stdout.write(json.dumps(dl.summary(), ensure_ascii=False) + "\n")
        return
    if not rows:
        out.print(f"no dead letters in {t.dlq} match", highlight=False)
        return
    table = Table("pos", "job id", "job type", "category", "error class", "message", "att",
                  "first failed", "failed at", title=t.dlq)
    for dl in rows:
        table.add_row(*(Text(v) for v in (
            dl.position, dl.job_id or "-", dl.job_type or "-", dl.category or "-",
            dl.error_class or "-", _cut(dl.message), str(dl.attempt or "-"),
            _short_time(dl.first_failed_at), _short_time(dl.when_ms))))
    out.print(table)
    counts = Counter(dl.error_class or "<none>" for dl in rows)
    capped = " (limit reached)" if len(rows) >= limit else ""
    by_class = ", ".join(f"{c} {n}" for c, n in counts.most_common())
    out.print(Text(f"{len(rows)} dead letter(s){capped}; by error class: {by_class}"))


@dlq_app.command("show")
def dlq_show(
    target: TargetArg,
    position: Annotated[str, typer.Argument(help="PARTITION:OFFSET, e.g. 3:1042.")],
    unmask: Annotated[bool, typer.Option(help="Show PII fields in clear.")] = False,
) -> None:
    """Every header, the decoded payload (PII masked) and the stack trace of one dead letter."""
    from schemas.registry import SchemaRegistry

    with _errors():
        p, o = dlq.parse_position(position)
        s = _settings()
        t = dlq.resolve_target(s, target)
        dl = dlq.read_one(s, t.dlq, p, o)
        registry = SchemaRegistry.from_dirs(s.schema_dirs)
    out.print(Text(f"{t.dlq} {dl.position}  key={dl.key_text!r}  timestamp={dlq.iso(dl.timestamp)}",
                   style="bold"))
    headers = Table("header", "value", title="headers")
    for k, v in dl.headers.items():
        if k != wire.ERROR_STACK:
            headers.add_row(Text(k), Text(v))
    out.print(headers)
    payload = dl.payload(registry, unmask)
    out.print(Text("payload" + ("" if unmask else " (PII masked)") + ":", style="bold"))
    if isinstance(payload, str):
        out.print(Text(payload))
        out.print(Text(f"value (hex): {dl.hex_preview() or '<empty>'}"))
    else:
        out.print(Text(json.dumps(payload, indent=2, ensure_ascii=False, default=str)))
    out.print(Text("stack trace:", style="bold"))
    out.print(Text(dl.stack or "<none>"))


@dlq_app.command("replay")
def dlq_replay(
    target: TargetArg,
    since: SinceOpt = None, until: UntilOpt = None, error_class: ClassOpt = None,
    category: CategoryOpt = None, key: KeyOpt = None, job_id: JobIdOpt = None,
    to: Annotated[
        str, typer.Option(help="origin (the main topic) or tier:<delay>, e.g. tier:10s.")
    ] = "origin",
    dry_run: Annotated[
        bool, typer.Option(help="Count what would be replayed; send nothing.")] = False,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="At most N records per second.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Replay at most N records.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    from_start: Annotated[
        bool, typer.Option(help="Ignore progress saved by earlier runs.")] = False,
) -> None:
    """Republish dead letters to their topic (attempt 1, same key, job id and partition).
    Resumable: a second run continues after what the first one replayed."""
    progress = _progress()
    task = progress.add_task("replaying" if not dry_run else "dry run", total=None)

    def confirm(plan: replay.ReplayPlan) -> None:
        resumed = " (resuming saved progress; --from-start to rescan)" if plan.resumed else ""
        what = (f"replay dead letters from {plan.source} to {plan.destination}: "
                f"{plan.to_scan} record(s) to scan{resumed}")
        if dry_run or yes:
            err.print(Text(what), soft_wrap=True)
        elif not sys.stdin.isatty():
            raise dlq.DlqError("refusing to replay without confirmation: stdin is not a terminal; "
                               "pass --yes")
        elif not typer.confirm(what + ". Continue?", default=False):
            raise typer.Abort()
        progress.update(task, total=plan.to_scan)
        progress.start()

    with _errors():
        s = _settings()
        f = _filters(since, until, error_class, category, key, job_id)
        try:
            result = replay.replay(s, target, f, to, dry_run=dry_run, rate=rate, limit=limit,
                                from_start=from_start, confirm=confirm,
                                progress=lambda n, _total: progress.update(task, completed=n))
        finally:
            if progress.live.is_started:
                progress.stop()
    verb = "would replay" if dry_run else "replayed"
    done = result.matched if dry_run else result.replayed
    out.print(Text(f"matched {result.matched}, {verb} {done}, skipped {result.skipped} "
                   f"({result.source} -> {result.destination})"))


@dlq_app.command("export")
def dlq_export(
    target: TargetArg,
    out_path: Annotated[Path, typer.Option("--out", help="JSON lines file to write.")],
    since: SinceOpt = None, until: UntilOpt = None, error_class: ClassOpt = None,
    category: CategoryOpt = None, key: KeyOpt = None, job_id: JobIdOpt = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N records.")] = None,
    unmask: Annotated[bool, typer.Option(help="Write PII fields in clear.")] = False,
) -> None:
    """Write matching dead letters as JSON lines (headers, decoded payload, base64 value)."""
    progress = _progress()
    task = progress.add_task("exporting", total=None)

    def on_progress(n: int, total: int) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=n, total=total)

    with _errors():
        s = _settings()
        f = _filters(since, until, error_class, category, key, job_id, limit)
        try:
            result = replay.export(s, target, f, out_path, unmask=unmask, progress=on_progress)
        finally:
            if progress.live.is_started:
                progress.stop()
    out.print(Text(f"exported {result.matched} dead letter(s) from {result.source} to {out_path}"
                   + ("" if unmask else " (PII masked)")))


@audit_app.command("list")
def audit_list(
    limit: Annotated[int, typer.Option(min=1, help="The newest N records.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines only, for scripts.")] = False,
) -> None:
    """Who replayed or exported which dead letters, when, and with which result."""
    from consumers.audit import list_audit

    with _errors():
        rows = list_audit(_settings(), limit)
    if as_json:
        for rec in rows:
            sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return
    if not rows:
        out.print("no audit records yet")
        return
    table = Table("at", "user@host", "command", "target", "destination", "counts", "offsets",
                  "filters", title="jobstream.audit")
    for rec in rows:
        command = str(rec.get("command", "?")) + (" (dry run)" if rec.get("dry_run") else "")
        if rec.get("status") == "failed":
            command += " FAILED"
        table.add_row(*(Text(str(v)) for v in (
            str(rec.get("at", ""))[:19].replace("T", " "), f"{rec.get('user')}@{rec.get('host')}",
            command, rec.get("target", ""), rec.get("destination", ""), _counts(rec),
            _offsets(rec.get("offsets")), _kv(rec.get("filters")) or "-")))
    out.print(table)


def _kv(d: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items()) if isinstance(d, dict) else ""


def _counts(rec: dict[str, Any]) -> str:
    c = rec.get("counts")
    if not isinstance(c, dict):
        return ""
    if rec.get("command") == "export":
        return f"{c.get('matched')} exported"
    return f"{c.get('matched')} matched, {c.get('replayed')} replayed, {c.get('skipped')} skipped"


def _offsets(d: Any) -> str:
    if not isinstance(d, dict):
        return ""
    return " ".join(f"{p}:{r.get('first')}-{r.get('last')}" for p, r in d.items()
                    if isinstance(r, dict)) or "-"
