"""`jobstream audit list`: the audit trail of replays, exports and unmasked views."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from jobstream.consumers.cli.dlq import _errors, _print_table, _settings, out

audit_app = typer.Typer(
    help="The audit log of replays and exports.", no_args_is_help=True,
    epilog="Example: jobstream audit list --limit 20",
)


@audit_app.command("list", epilog="Example: jobstream audit list --limit 20 --json")
def audit_list(
    limit: Annotated[int, typer.Option(min=1, help="The newest N records.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines only, for scripts.")] = False,
) -> None:
    """Who replayed or exported which dead letters, when, and with which result."""
    from jobstream.consumers.ops.audit import list_audit

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
    for column in table.columns[:5]:
        column.no_wrap = True
    for rec in rows:
        command = str(rec.get("command", "?")) + (" (dry run)" if rec.get("dry_run") else "")
        if rec.get("status") in ("failed", "interrupted"):
            command += f" {str(rec['status']).upper()}"
        table.add_row(*(Text(str(v)) for v in (
            str(rec.get("at", ""))[:19].replace("T", " "), f"{rec.get('user')}@{rec.get('host')}",
            command, rec.get("target", ""), rec.get("destination", ""), _counts(rec),
            _offsets(rec.get("offsets")), _kv(rec.get("filters")) or "-")))
    _print_table(table)


def _kv(d: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items()) if isinstance(d, dict) else ""


def _counts(rec: dict[str, Any]) -> str:
    c = rec.get("counts")
    if not isinstance(c, dict):
        return ""
    if rec.get("command") == "export":
        return f"{c.get('exported', c.get('matched'))} exported"
    if rec.get("command") == "show":
        return "1 shown unmasked"
    big = f", {c['too_large']} too large" if c.get("too_large") else ""
    return (f"{c.get('matched')} matched, {c.get('replayed')} replayed, "
            f"{c.get('skipped')} skipped{big}")


def _offsets(d: Any) -> str:
    if not isinstance(d, dict):
        return ""
    return " ".join(f"{p}:{r.get('first')}-{r.get('last')}" for p, r in d.items()
                    if isinstance(r, dict)) or "-"


@audit_app.command("verify", epilog="Example: jobstream audit verify orders.confirmation "
                                     "--since -1d")
def audit_verify(
    target: Annotated[str, typer.Argument(
        help="`audit` (the audit trail) or a job type (its T.history partitions).")] = "audit",
    anchor: Annotated[list[str] | None, typer.Option(
        help="A head printed earlier (repeatable): OFFSET:HASH for the audit trail, "
             "PARTITION:OFFSET:HASH for a job type; fails if the chain up to it was "
             "rewritten.")] = None,
    since: Annotated[str | None, typer.Option(
        help="Walk only records from this time on (ISO 8601 or relative, e.g. -1d); the "
             "first link is then taken as given.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
) -> None:
    """Check a hash chain: a record changed, removed or reordered fails (exit 1)."""
    from jobstream.config.topics import AUDIT_TOPIC, job_topics
    from jobstream.consumers.ops.audit_chain import parse_anchor, verify_partitions
    from jobstream.consumers.ops.dlq import DlqError, parse_time, to_ms
    from jobstream.consumers.ops.dlq_reader import list_topics

    with _errors():
        s = _settings()
        since_ms = None
        if since is not None:
            try:
                since_ms = to_ms(parse_time(since))
            except ValueError as e:
                raise DlqError(f"--since {since!r}: {e}") from None
        anchors: dict[int, dict[int, str]] = {}
        if target == "audit":
            topic = AUDIT_TOPIC
            for a in anchor or []:
                offset, digest = parse_anchor(a)
                anchors.setdefault(0, {})[offset] = digest
        else:
            if target not in s.jobs and target not in _known_types(s):
                raise DlqError(f"unknown job type {target!r} (or `audit` for the audit trail)")
            topic = job_topics(target, s.job(target)).history
            for a in anchor or []:
                part, sep, rest = a.partition(":")
                if not sep or not part.strip().isdigit():
                    raise DlqError(f"--anchor {a!r}: expected PARTITION:OFFSET:HASH for a job "
                                   "type, as `audit verify` prints its heads")
                offset, digest = parse_anchor(rest)
                anchors.setdefault(int(part), {})[offset] = digest
        if topic not in list_topics(s):
            if target == "audit":
                reports = {}
            else:
                raise DlqError(f"topic {topic} does not exist: run `jobstream topics apply`")
        else:
            reports = verify_partitions(s, topic, anchors, [0] if target == "audit" else None,
                                        since_ms)
    ok = all(r.ok for r in reports.values())
    if as_json:
        if target == "audit":
            data: Any = reports[0].as_dict() if reports else {"topic": topic, "ok": True,
                                                              "records": 0, "events": 0,
                                                              "problems": []}
        else:
            data = {"topic": topic, "ok": ok,
                    "partitions": {str(p): r.as_dict() for p, r in reports.items()}}
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        if not reports:
            out.print(f"{topic}: no records yet")
        for p, report in reports.items():
            _say_report(report, f"{topic}" + ("" if target == "audit" else f"[{p}]"),
                        "" if target == "audit" else f"{p}:")
        out.print("chain intact" if ok else "chain BROKEN: " + str(
            sum(len(r.problems) for r in reports.values())) + " problem(s)")
    if not ok:
        sys.exit(1)  # not typer.Exit: see _errors() in cli/dlq.py


def _known_types(s: Any) -> list[str]:
    from jobstream.schemas.registry import SchemaRegistry

    return SchemaRegistry.from_dirs(s.schema_dirs).job_types()


def _say_report(report: Any, name: str, anchor_prefix: str) -> None:
    data = report.as_dict()
    held = f", {data['events']} events" if data["events"] != data["records"] else ""
    out.print(Text(f"{name}: {data['records']} records{held} (offsets {report.low}-"
                   f"{max(report.low, report.high - 1)})"))
    if data["unchained"]:
        out.print(f"  {data['unchained']} written before chaining, not covered")
    if data["starts_mid_chain"]:
        out.print(f"  checked from offset {report.low} (older records are gone by retention, "
                  "or left out by --since): its first link is taken as given")
    for p in data["problems"]:
        out.print(Text(f"  BROKEN at offset {p['offset']}: {p['reason']}"))
    if data["head"]:
        out.print(Text(f"  head {anchor_prefix}{data['head_offset']}:{data['head']}  (keep it "
                       "to check later with --anchor)"))
