"""`jobstream batches show`: a batch's state and counts, and its members by state, read from
jobstream.batches (the members' ids derive from the batch id, so pending ones are listed too)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from jobstream.consumers.cli.common import out
from jobstream.consumers.cli.dlq import _errors, _settings
from jobstream.consumers.cli.errors import fail
from jobstream.schemas import batch_record as br
from jobstream.schemas.lifecycle import when

batches_app = typer.Typer(
    help="Look a batch up: its counts and its members by state.", no_args_is_help=True,
    epilog="Example: jobstream batches show 3f2a9c0e5b7d4e1f8a6c2b9d0e4f7a13",
)


@batches_app.command("show", epilog="Example: jobstream batches show "
                                    "3f2a9c0e5b7d4e1f8a6c2b9d0e4f7a13 --members 20")
def batches_show(
    batch_id: Annotated[str, typer.Argument(help="The batch id batch() returned.")],
    members: Annotated[int, typer.Option(
        help="Member ids to list per state (0: counts only).")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="The batch as one JSON object.")
                       ] = False,
) -> None:
    """The batch's state (open or closed), its counts (succeeded, dead_lettered, cancelled,
    pending) and its members by state. Exit 4 when there is no such batch."""
    from jobstream.consumers.batches.topic import read_batch

    if members < 0:
        fail(f"--members: must be 0 or more, got {members}")
    with _errors():
        entry = read_batch(_settings(), batch_id)
    if entry is None or entry.batch is None:
        out.print(Text(f"batch {batch_id}: no record of it on jobstream.batches"))
        sys.exit(4)
    b = entry.batch
    by_state: dict[str, list[str]] = {o: [] for o in (*br.OUTCOMES, "pending")}
    for i in range(b.total):
        mid = br.member_id(batch_id, i)
        got = entry.outcomes.get(mid)
        by_state[got[0] if got else "pending"].append(mid)
    counts = {s: len(ids) for s, ids in by_state.items()}
    if as_json:
        data: dict[str, Any] = {
            "batch_id": b.id, "job_type": b.job_type, "state": b.state, "total": b.total,
            "counts": counts, "created_at": b.created_ms, "closed_at": b.closed_ms,
            "parent": list(b.parent) if b.parent else None, "parent_job_id": b.parent_job_id,
            "on_complete": b.on_complete[0] if b.on_complete else None,
            "callback_job_id": br.callback_id(b.id),
            "members": {s: ids[:members] for s, ids in by_state.items() if ids}}
        sys.stdout.write(json.dumps(data) + "\n")
        return
    out.print(Text(f"batch {b.id} ({b.job_type} x {b.total}): {b.state}"))
    out.print(Text("  " + ", ".join(f"{s} {n}" for s, n in counts.items())))
    out.print(Text(f"  created {when(b.created_ms)} UTC"
                   + (f", closed {when(b.closed_ms)} UTC" if b.closed_ms else "")))
    if b.on_complete:
        out.print(Text(f"  on_complete: {b.on_complete[0]} (job id {br.callback_id(b.id)})"))
    if b.on_success:
        out.print(Text(f"  on_success: {b.on_success[0]} (job id "
                       f"{br.callback_id(b.id, 'success')})"))
    if b.parent:
        out.print(Text(f"  nested: member {b.parent[1]} of batch {b.parent[0]}"))
    elif b.parent_job_id:
        out.print(Text(f"  opened by job {b.parent_job_id}"))
    for state, ids in by_state.items():
        if ids and members:
            more = f" (+{len(ids) - members} more)" if len(ids) > members else ""
            out.print(Text(f"  {state}: {', '.join(ids[:members])}{more}"))
