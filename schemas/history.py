"""T.history records: a job's lifecycle, one JSON record per event, hash-chained per stream.

Keyed like the job (so a job's whole history is in one partition, the one its key hashes to).
Events: `attempt` (one per attempt's outcome), `progress`, `enqueued` (a child job), `cancelled`,
`replayed`, `chain` (a dead-lettered chain step: where its chain stopped). Each record is sealed
into its writer's stream (schemas/chain.py): the worker that owns partition p of a source topic
(T, a tier, a lane) writes stream `<topic>:<p>`; operator commands write stream `ops`.

A worker writes the events of one stream that arise in one pass of its loop as one `batch`
record when there are several (`events`: the events in order, each as it would be alone; the
record keyed by its stream): one produce and one seal for many jobs. `events()` gives a record's
events either way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from jobstream.schemas.chain import seal_bytes

VERSION: Final = 1
EVENTS: Final = ("attempt", "progress", "enqueued", "cancelled", "replayed", "chain")
BATCH: Final = "batch"
# An attempt's outcome in history; `deduplicated` is a delivery skipped as already done.
OUTCOMES: Final = ("succeeded", "retried", "dead_lettered", "cancelled", "deduplicated")
OPS_STREAM: Final = "ops"
MAX_MESSAGE: Final = 1024  # error messages are cut like the failure headers


class HistoryError(ValueError):
    """A record that is not a jobstream history record (wrong shape, not JSON)."""


def stream_for(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


@dataclass(frozen=True)
class Policy:
    """The retry policy in force when an attempt ran, stored with it."""

    tiers_s: tuple[float, ...]
    max_attempts: int
    timeout_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"tiers_s": list(self.tiers_s), "max_attempts": self.max_attempts,
                "timeout_s": self.timeout_s}


def attempt(*, job_id: str, job_type: str, attempt: int, worker: str, started_at: int,
            finished_at: int, outcome: str, policy: Policy, source: tuple[str, int, int],
            trace_id: str | None = None, parent_job_id: str | None = None,
            enqueued_at: int | None = None, submitter: str | None = None,
            error: tuple[str, str, str] | None = None, retry: tuple[str, int] | None = None,
            result: Any = None, has_result: bool = False) -> dict[str, Any]:
    """One attempt's outcome. `error`: (category, class, message); `retry`: (tier topic, due
    time in ms) when the job goes to a tier; `result` only with has_result (None is a result)."""
    if outcome not in OUTCOMES:
        raise HistoryError(f"outcome {outcome!r} is not one of {OUTCOMES}")
    rec: dict[str, Any] = {
        "v": VERSION, "event": "attempt", "job_id": job_id, "job_type": job_type,
        "attempt": attempt, "worker": worker, "at": finished_at, "started_at": started_at,
        "finished_at": finished_at, "duration_ms": max(0, finished_at - started_at),
        "outcome": outcome, "policy": policy.as_dict(),
        "source": {"topic": source[0], "partition": source[1], "offset": source[2]},
    }
    for k, v in (("trace_id", trace_id), ("parent_job_id", parent_job_id),
                 ("enqueued_at", enqueued_at), ("submitter", submitter)):
        if v is not None:
            rec[k] = v
    if error is not None:
        category, cls, message = error
        rec["error"] = {"category": category, "class": cls, "message": message[:MAX_MESSAGE]}
    if retry is not None:
        rec["retry"] = {"tier": retry[0], "due_at": retry[1]}
    if has_result:
        rec["result"] = result
    return rec


def event(kind: str, *, job_id: str, job_type: str, at: int, **fields: Any) -> dict[str, Any]:
    """A progress, enqueued, cancelled or replayed record; `fields` as the event needs them."""
    if kind not in EVENTS or kind == "attempt":
        raise HistoryError(f"event {kind!r} is not one of {EVENTS[1:]}")
    return {"v": VERSION, "event": kind, "job_id": job_id, "job_type": job_type, "at": at,
            **{k: v for k, v in fields.items() if v is not None}}


def encode(record: dict[str, Any], prev: str, stream: str,
           plain: bool = False) -> tuple[bytes, str]:
    """The record sealed into `stream` after `prev`: (value bytes, its hash). `plain`: made of
    JSON types only (an `attempt` record without a result is): see chain.seal. Stored as the
    canonical JSON that is hashed, the chain field last (chain.seal_bytes): one encode."""
    return seal_bytes(record, prev, stream=stream, plain=plain)


def batch(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Several events of one stream as one record (sealed as one)."""
    return {"v": VERSION, "event": BATCH, "at": events[-1]["at"], "events": events}


def decode(value: bytes | None) -> dict[str, Any]:
    """A record read back (one event, or a batch of them); HistoryError when it is not one of
    ours."""
    try:  # (not orjson: it reads an integer beyond 64 bits, in a result, as a float)
        rec = json.loads(value or b"")
    except ValueError:
        raise HistoryError("not JSON") from None
    if isinstance(rec, dict) and rec.get("event") == BATCH:
        events = rec.get("events")
        if not isinstance(events, list) or not events:
            raise HistoryError("a batch without events")
        for ev in events:
            _check(ev)
        return rec
    return _check(rec)


def _check(rec: Any) -> dict[str, Any]:
    if not isinstance(rec, dict):
        raise HistoryError("not a JSON object")
    if rec.get("event") not in EVENTS:
        raise HistoryError(f"unknown event {rec.get('event')!r}")
    if not isinstance(rec.get("job_id"), str) or not isinstance(rec.get("at"), int):
        raise HistoryError("no job_id or at")
    return rec


def events(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """A decoded record's events: a batch's in order, or the record itself."""
    return rec["events"] if rec.get("event") == BATCH else [rec]


def result_bytes(result: Any, limit: int) -> bytes:
    """A handler's return value as stored: JSON, at most `limit` bytes. ValueError naming the
    problem otherwise (the worker makes that a permanent failure of the attempt)."""
    try:
        raw = json.dumps(result, separators=(",", ":"), ensure_ascii=False,
                         allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise ValueError(f"the handler's return value is not JSON-serialisable: {e}") from None
    if len(raw) > limit:
        raise ValueError(f"the handler's return value is {len(raw):,} bytes of JSON, over "
                         f"result_max_bytes ({limit:,}); store big results elsewhere and "
                         "return a reference")
    return raw
