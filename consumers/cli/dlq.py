"""`jobstream dlq list|show|replay|export` and `jobstream audit list`: printing only; the work
is in consumers/dlq_reader.py, replay.py, dlq_export.py and audit.py."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from jobstream.config.logging import configure_logging
from jobstream.config.settings import Settings, load_settings
from jobstream.consumers.ops import dlq, dlq_export, dlq_reader, interrupt, replay
from jobstream.producers.connection import ConnectionCheckError, check_connection
from jobstream.schemas import wire

dlq_app = typer.Typer(
    help="Inspect, replay and export dead letters.", no_args_is_help=True,
    epilog="Example: jobstream dlq list orders.confirmation --since -1h",
)

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
    and main() drops it, so the process would exit 0. Ctrl-C or SIGTERM (consumers/interrupt.py)
    -> exit 130 or 143 after the operation wrapped up."""
    try:
        with interrupt.raising():
            yield
    except dlq.DlqError as e:
        err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    except interrupt.Interrupted as e:
        sys.exit(e.exit_code)


def _settings() -> Settings:
    s = load_settings()
    configure_logging(s.log)  # stderr: stdout stays the command's output
    try:
        # a rejected password says so at once; an absent broker within the CLI's short timeout
        check_connection(s.kafka, timeout=dlq_reader.METADATA_TIMEOUT_S)
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
        since_text=since,
    )


def _cut(text: str | None, n: int = 60) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def _short_time(ms: int | None) -> str:
    s = dlq.iso(ms)
    return s[:19].replace("T", " ") if s else "-"


def _progress() -> Progress:
    # Offsets, not records: transaction markers take offsets too, and the bar must end full.
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("offsets"), TimeElapsedColumn(), console=err, transient=False)


def _table(title: str, cells: dict[str, list[str]]) -> Table:
    table = Table(title=title)
    for name in cells:
        whole = name in ("pos", "job id")
        table.add_column(name, no_wrap=whole, overflow="fold",
                         min_width=max(len(v) for v in cells[name]) if whole else None)
    for row in zip(*cells.values(), strict=True):
        table.add_row(*(Text(v) for v in row))
    return table


def _width(table: Table) -> int:
    """The width the table takes when nothing wraps."""
    return Measurement.get(out, out.options.update(width=100_000), table).maximum


def _print_table(table: Table) -> None:
    """In a terminal, at its width (columns marked no_wrap stay whole, others wrap); in a pipe
    or a file at the table's full width, so that nothing is cut at 80 columns."""
    if out.is_terminal:
        out.print(table)
        return
    Console(width=max(_width(table), 20), highlight=False).print(table)


@dlq_app.command(
    "list", epilog="Example: jobstream dlq list orders.confirmation --since -1h --category decode"
)
def dlq_list(
    target: TargetArg,
    since: SinceOpt = None, until: UntilOpt = None, error_class: ClassOpt = None,
    category: CategoryOpt = None, key: KeyOpt = None, job_id: JobIdOpt = None,
    limit: Annotated[int, typer.Option(
        min=1, help="Show the oldest N matching records (all are counted).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines only, for scripts.")] = False,
) -> None:
    """List dead letters, oldest failure first across partitions, and count every matching one
    by error class."""
    with _errors():
        s = _settings()
        f = _filters(since, until, error_class, category, key, job_id, limit)
        t = dlq_reader.resolve_target(s, target)
        sel = dlq_reader.select(s, t.dlq, f)
    if as_json:
        for dl in sel.rows:
            sys.stdout.write(json.dumps(dl.summary(), ensure_ascii=False) + "\n")
        return
    if not sel.rows:
        out.print(f"no dead letters in {t.dlq} match", highlight=False)
        return
    print_list(t.dlq, sel, limit)


def print_list(title: str, sel: dlq_reader.Selection, limit: int) -> None:
    """The `dlq list` table and its count line."""
    rows = sel.rows
    cells = {
        "pos": [dl.position for dl in rows], "job id": [dl.job_id or "-" for dl in rows],
        "job type": [dl.job_type or "-" for dl in rows],
        "category": [dl.category or "-" for dl in rows],
        "error class": [dl.error_class or "-" for dl in rows],
        "message": [_cut(dl.message) for dl in rows],
        "att": [str(dl.attempt or "-") for dl in rows],
        "first failed": [_short_time(dl.first_failed_at) for dl in rows],
        "failed at": [_short_time(dl.when_ms) for dl in rows],
    }
    # A narrow terminal loses these columns first (--json has them all), then the rest wraps;
    # positions and job ids stay whole: they are copied into other commands.
    for name in ("first failed", "att", "job type", "category", "failed at"):
        if not out.is_terminal or _width(_table(title, cells)) <= out.width:
            break
        del cells[name]
    _print_table(_table(title, cells))
    shown = (f"showing the oldest {len(rows)} of {sel.matched} matching dead letters "
             f"(--limit {limit})" if sel.matched > len(rows) else f"{sel.matched} dead letter(s)")
    by_class = ", ".join(f"{c} {n}" for c, n in sel.by_class.most_common())
    out.print(Text(f"{shown}; by error class: {by_class}"), soft_wrap=True)


@dlq_app.command("show", epilog="Example: jobstream dlq show orders.confirmation 3:1042")
def dlq_show(
    target: TargetArg,
    position: Annotated[str, typer.Argument(help="PARTITION:OFFSET, e.g. 3:1042.")],
    unmask: Annotated[bool, typer.Option(
        help="Show PII fields in clear (audited: the audit record is written first).")] = False,
) -> None:
    """Every header, the decoded payload (PII masked; bytes as base64) and the stack trace of
    one dead letter."""
    from jobstream.consumers.ops.audit import record_operation
    from jobstream.schemas.registry import SchemaRegistry

    with _errors():
        p, o = dlq.parse_position(position)
        s = _settings()
        t = dlq_reader.resolve_target(s, target)
        dl = dlq_reader.read_one(s, t.dlq, p, o)
        registry = SchemaRegistry.from_dirs(s.schema_dirs)
        if unmask:  # no audit record, no PII: a failed write stops here
            seen = dlq.Result("show", t.dlq, "terminal" if out.is_terminal else "stdout",
                              matched=1, covered={p: (o, o)})
            record_operation(s, seen, dlq.Filters(), {"unmask": True, "job_id": dl.job_id,
                                                      "position": dl.position})
    out.print(Text(f"{t.dlq} {dl.position}  key={dl.key_text!r}  timestamp={dlq.iso(dl.timestamp)}",
                   style="bold"))
    headers = Table("header", "value", title="headers")
    for k, v in dl.headers.items():
        if k != wire.ERROR_STACK:
            headers.add_row(Text(k), Text(v))
    _print_table(headers)
    payload = dl.payload(registry, unmask)
    out.print(Text("payload" + ("" if unmask else " (PII masked)") + ":", style="bold"))
    if isinstance(payload, str):
        out.print(Text(payload))
        out.print(Text(f"value (hex): {dl.hex_preview() or '<empty>'}"))
    else:
        out.print(Text(json.dumps(payload, indent=2, ensure_ascii=False)))
    out.print(Text("stack trace:", style="bold"))
    out.print(Text(dl.stack or "<none>"))


@dlq_app.command(
    "replay",
    epilog="Example: jobstream dlq replay orders.confirmation --category timeout --dry-run",
)
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
    priority: Annotated[str | None, typer.Option(
        help="Send every job to this priority lane (with --to origin; audited); default: "
        "each to its own lane.")] = None,
) -> None:
    """Republish dead letters to their topic (attempt 1, same key, job id and partition).

    Progress: a run saves how far it read, and the next run with the same --to and the same
    filters continues after it. Progress is kept per filter set (--error-class, --category,
    --key, --job-id, --since as typed): a run with other filters reads from the start and
    may replay again what an earlier run replayed. --until is not part of the filter set and
    progress never moves past a record left out for failing after --until, so a later run
    (without --until, or with a later one) still finds it. --from-start ignores saved
    progress; --dry-run saves none.

    A record larger than the destination topic accepts is skipped, named on stderr and in
    the audit record, and counted as "too large"; it stays in the DLQ. Ctrl-C or SIGTERM
    stops after the current record: the run waits for what it sent, saves progress up to it
    and writes an `interrupted` audit record (exit 130 or 143).
    """
    progress = _progress()
    task = progress.add_task("replaying" if not dry_run else "dry run", total=None)

    def confirm(plan: replay.ReplayPlan) -> None:
        whose = "these filters'" if plan.filtered else "unfiltered"
        resumed = (f" (resuming {whose} saved progress; --from-start to rescan)"
                   if plan.resumed else "")
        what = (f"replay dead letters from {plan.source} to {plan.destination}: "
                f"{plan.to_scan} offset(s) to scan{resumed}")
        if dry_run or yes:
            err.print(Text(what), soft_wrap=True)
        elif not sys.stdin.isatty():
            raise dlq.DlqError("refusing to replay without confirmation: stdin is not a terminal; "
                               "pass --yes")
        elif not typer.confirm(what + ". Continue?", default=False):
            raise typer.Abort()
        progress.update(task, total=plan.to_scan)
        progress.start()

    def skipped(ref: str, job_id: str | None, why: str) -> None:
        _, p, o = ref.rsplit(":", 2)
        err.print(Text(f"warning: skipped {ref} (job {job_id or '-'}): {why}; it stays in the "
                       f"DLQ (jobstream dlq show {target} {p}:{o})"), soft_wrap=True)

    result: dlq.Result | None = None
    try:
        with _errors():
            s = _settings()
            f = _filters(since, until, error_class, category, key, job_id)
            try:
                result = replay.replay(
                    s, target, f, to, dry_run=dry_run, rate=rate, limit=limit,
                    from_start=from_start, confirm=confirm, on_skip=skipped, priority=priority,
                    progress=lambda n, _total: progress.update(task, completed=n))
            except interrupt.Interrupted as e:
                result = e.result
                if result is not None:
                    err.print(Text("interrupted: progress is saved up to what was replayed; run "
                                   "the same command again to continue"), soft_wrap=True)
                raise
            finally:
                if progress.live.is_started:
                    progress.stop()
    finally:
        if result is not None:
            verb = "would replay" if dry_run else "replayed"
            done = result.matched if dry_run else result.replayed
            big = f", too large {len(result.too_large)}" if result.too_large else ""
            out.print(Text(f"matched {result.matched}, {verb} {done}, skipped {result.skipped}"
                           f"{big} ({result.source} -> {result.destination})"))


@dlq_app.command(
    "export", epilog="Example: jobstream dlq export orders.confirmation --out dead.jsonl --limit 50"
)
def dlq_export_cmd(
    target: TargetArg,
    out_path: Annotated[Path, typer.Option("--out", help="JSON lines file to write.")],
    since: SinceOpt = None, until: UntilOpt = None, error_class: ClassOpt = None,
    category: CategoryOpt = None, key: KeyOpt = None, job_id: JobIdOpt = None,
    limit: Annotated[int | None, typer.Option(
        min=1, help="The oldest N matching records (by failure time).")] = None,
    unmask: Annotated[bool, typer.Option(help="Write PII fields in clear.")] = False,
) -> None:
    """Write matching dead letters as JSON lines: headers, the decoded payload (PII masked;
    bytes and fixed values as base64 strings, decimals as strings, times as ISO 8601) and
    the raw value as base64. The file appears whole when the export is done and audited, or
    not at all (a failed or interrupted export leaves an existing file as it was)."""
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
            result = dlq_export.export(s, target, f, out_path, unmask=unmask,
                                       progress=on_progress)
        except interrupt.Interrupted as e:
            if e.result is not None:
                out.print(Text(f"interrupted: nothing written to {out_path} "
                               f"({e.result.matched} dead letter(s) had been read)"))
            raise
        finally:
            if progress.live.is_started:
                progress.stop()
    out.print(Text(f"exported {result.matched} dead letter(s) from {result.source} to {out_path}"
                   + ("" if unmask else " (PII masked)")))
