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


@audit_app.command("verify", epilog="Example: jobstream audit verify --anchor 41:5e884898da"
                                     "28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8")
def audit_verify(
    anchor: Annotated[list[str] | None, typer.Option(
        help="OFFSET:HASH of a head printed earlier (repeatable): fails if the chain up to it "
             "was rewritten.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
) -> None:
    """Check the audit trail's hash chain: a record changed, removed or reordered fails (exit 1)."""
    from jobstream.consumers.ops.audit_chain import parse_anchor, verify

    with _errors():
        anchors = dict(parse_anchor(a) for a in anchor or [])
        report = verify(_settings(), anchors)
    data = report.as_dict()
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        out.print(f"{data['topic']}: {data['records']} records (offsets {report.low}-"
                  f"{max(report.low, report.high - 1)})")
        if data["unchained"]:
            out.print(f"  {data['unchained']} written before chaining, not covered")
        if data["starts_mid_chain"]:
            out.print(f"  the oldest records are gone (retention); the chain is checked from "
                      f"offset {report.low}")
        for p in data["problems"]:
            out.print(Text(f"  BROKEN at offset {p['offset']}: {p['reason']}"))
        if data["head"]:
            out.print(f"  head {data['head_offset']}:{data['head']}  (keep it to check later "
                      "with --anchor)")
        out.print("chain intact" if report.ok else f"chain BROKEN: {len(data['problems'])} "
                  "problem(s)")
    if not report.ok:
        sys.exit(1)  # not typer.Exit: see _errors() in cli/dlq.py
