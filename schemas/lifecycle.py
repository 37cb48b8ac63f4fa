"""A job's state, folded from what the topics say about it: its history records (in offset
order), its ledger entry, and whether it waits in T.scheduled. Pure: the readers that fetch
those live in producers/ (Publisher.status) and consumers/ops/ (jobstream jobs show)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

STATES: Final = ("unknown", "queued", "scheduled", "running", "retrying", "succeeded",
                 "dead_lettered", "cancelled")
FINAL: Final = frozenset({"succeeded", "dead_lettered", "cancelled"})


@dataclass
class JobStatus:
    job_id: str
    job_type: str
    state: str = "unknown"
    attempts: int = 0
    result: Any = None
    has_result: bool = False
    last_error: dict[str, Any] | None = None
    due_at: int | None = None  # ms: when a retrying or scheduled job runs next
    enqueued_at: int | None = None
    finished_at: int | None = None
    trace_id: str | None = None
    parent_job_id: str | None = None
    batch_id: str | None = None  # the batch the job is a member of
    submitter: str | None = None
    children: list[str] = field(default_factory=list)
    progress: tuple[float, str | None] | None = None
    chain: dict[str, Any] | None = None  # a chain step's place, once its chain stopped there
    events: list[dict[str, Any]] = field(default_factory=list)  # the history records
    partition: int | None = None  # where a lookup found the job's records
    key: str | None = None  # the key they carry, when a lookup read one

    @property
    def final(self) -> bool:
        return self.state in FINAL


def fold(job_id: str, job_type: str, records: list[dict[str, Any]],
         ledger_state: str | None = None, scheduled_at: int | None = None,
         cancelled: bool = False) -> JobStatus:
    """The status after these events. The ledger keys completions (succeeded, cancelled) by job
    id, and its word wins over history, which can be shorter (its retention, or an at-least-once
    interval that failed after the ledger record went out). `cancelled`: the ledger holds a
    cancel of the job (`jobs cancel`): a job not final and not running is cancelled (no attempt
    of it starts any more); a run that raced the cancel and succeeded stays succeeded."""
    st = JobStatus(job_id, job_type, events=list(records))
    for rec in records:
        kind = rec.get("event")
        for k in ("trace_id", "parent_job_id", "batch_id", "submitter", "enqueued_at"):
            if rec.get(k) is not None and getattr(st, k) is None:
                setattr(st, k, rec[k])
        if kind == "attempt":
            outcome = rec.get("outcome")
            if outcome == "deduplicated":
                continue
            if outcome == "cancelled":  # skipped by a worker, never run: not an attempt made
                st.state, st.due_at = "cancelled", None
                continue
            st.attempts = max(st.attempts, int(rec.get("attempt") or 0))
            st.last_error = rec.get("error") or st.last_error
            st.finished_at = rec.get("finished_at")
            st.due_at = None
            if outcome == "succeeded":
                st.state, st.last_error = "succeeded", None
                st.has_result = "result" in rec
                st.result = rec.get("result")
            elif outcome == "retried":
                st.state = "retrying"
                st.due_at = (rec.get("retry") or {}).get("due_at")
            elif outcome == "dead_lettered":
                st.state = str(outcome)
        elif kind == "replayed":
            st.state, st.due_at, st.finished_at = "queued", None, None
        elif kind == "cancelled":  # asked for (`jobs cancel`): in effect unless a run raced it
            cancelled = True
        elif kind == "progress":
            frac = rec.get("fraction")
            st.progress = (float(frac) if isinstance(frac, int | float) else 0.0,
                           rec.get("message"))
            if not st.final:
                st.state = "running"
        elif kind == "enqueued" and isinstance(rec.get("child_job_id"), str):
            if rec["child_job_id"] not in st.children:  # a redo at least once: the same id
                st.children.append(rec["child_job_id"])
        elif kind == "chain":
            st.chain = {k: rec.get(k) for k in ("chain_id", "step", "of", "types", "stopped")}
    if ledger_state in ("succeeded", "cancelled"):
        st.state = ledger_state
    if scheduled_at is not None and not st.final:
        st.state, st.due_at = "scheduled", scheduled_at
    if cancelled and not st.final and st.state != "running":
        st.state, st.due_at = "cancelled", None
    return st


def when(ms: Any) -> str:
    """A record's millisecond timestamp as UTC text (empty when it has none)."""
    if not isinstance(ms, int):
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def describe(rec: dict[str, Any], result_chars: int = 200) -> str:
    """One line of what a history record says beyond its columns (the error, the next tier,
    the result, the progress), as `jobs show` and the console's timeline print it."""
    kind = rec.get("event")
    if kind == "attempt":
        if rec.get("outcome") == "cancelled":
            return "skipped: cancelled before it ran"
        parts = []
        if isinstance(rec.get("error"), dict):
            e = rec["error"]
            parts.append(f"{e.get('category')}: {e.get('class')}: {e.get('message')}")
        if isinstance(rec.get("retry"), dict):
            parts.append(f"next {rec['retry'].get('tier')} at {when(rec['retry'].get('due_at'))}")
        if "result" in rec:
            parts.append("result " + json.dumps(rec["result"], ensure_ascii=False)[:result_chars])
        return "; ".join(parts)
    if kind == "progress":
        return f"{rec.get('fraction')} {rec.get('message') or ''}".strip()
    if kind == "enqueued":
        return f"child {rec.get('child_job_type', '')} {rec.get('child_job_id')}"
    if kind == "chain":
        return chain_stop(rec)
    return " ".join(f"{k}={v}" for k, v in rec.items()
                    if k in ("user", "reason", "from", "to", "dlq_offset"))


def chain_stop(rec: dict[str, Any]) -> str:
    """Where a chain stopped: `stopped at step 2 of 3 (b); not run: c`."""
    raw_types, raw_step = rec.get("types"), rec.get("step")
    types: list[Any] = raw_types if isinstance(raw_types, list) else []
    step: int = raw_step if isinstance(raw_step, int) else 0
    here = f" ({types[step - 1]})" if 0 < step <= len(types) else ""
    rest = ", ".join(str(t) for t in types[step:]) if step else ""
    return (f"{rec.get('chain_id')} stopped at step {step} of {rec.get('of')}{here}"
            + (f"; not run: {rest}" if rest else ""))
