"""Records of the jobstream.batches topic (docs/workflows.md), and the ids of a batch.

- key `<batch id>`: the batch record, JSON: `{"v": 1, "id", "job_type", "total", "key",
  "on_complete": [job_type, payload] | null, "on_success": [...] | null, "parent":
  [batch id, member id] | null, "state": "open" | "closed", "created_ms", "closed_ms",
  "counts": {"succeeded", "dead_lettered", "cancelled"} (when closed), "topics": {"complete",
  "success"}: where the publisher's settings put each callback job type}`.
- key `<batch id>/<member id>`: a member's final outcome, JSON `{"o": "succeeded" |
  "dead_lettered" | "cancelled", "at": ms}`. Compaction keeps the latest, so a member
  replayed from the DLQ that then succeeds overwrites its own record.

Every key of a batch goes to the partition its batch id picks (`partition_of`), so one owner
sees the batch record and all its members' outcomes. A member's job id is derived from the
batch id and its index, the callback's from the batch id: nothing needs a stored member list,
and a callback published twice has one id (the ledger drops the repeat). Pure: no Kafka.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, Final

from jobstream.schemas.partitioner import murmur2

VERSION: Final = 1
OPEN: Final = "open"
CLOSED: Final = "closed"
SUCCEEDED: Final = "succeeded"
DEAD_LETTERED: Final = "dead_lettered"
CANCELLED: Final = "cancelled"
OUTCOMES: Final = (SUCCEEDED, DEAD_LETTERED, CANCELLED)
SEP: Final = "/"

# uuid5-style namespaces (the bytes only: the ids are 32 hex digits like every job id)
_MEMBER_NS = bytes.fromhex("5e0c2a7f3b9d4e61a8f21c7d0b4e9a36")
_CALLBACK_NS = bytes.fromhex("c4a19e52d07b4f3c9e6a2b8d1f05e7a4")


def _derived(ns: bytes, text: str) -> str:
    b = bytearray(hashlib.sha1(ns + text.encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    return b.hex()


def member_id(batch_id: str, index: int) -> str:
    """The job id of the batch's member number `index` (0-based)."""
    return _derived(_MEMBER_NS, f"{batch_id}#{index}")


def callback_id(batch_id: str, which: str = "complete") -> str:
    """The job id of the batch's on_complete (`complete`) or on_success (`success`) job."""
    return _derived(_CALLBACK_NS, f"{batch_id}/{which}")


def partition_of(batch_id: str, partitions: int) -> int:
    """The jobstream.batches partition of every record of the batch."""
    return (murmur2(batch_id.encode()) & 0x7FFFFFFF) % partitions


def member_key(batch_id: str, member: str) -> bytes:
    return f"{batch_id}{SEP}{member}".encode()


def split_key(key: bytes | None) -> tuple[str, str | None]:
    """(batch id, member id or None for the batch record)."""
    text = (key or b"").decode("utf-8", "replace")
    bid, sep, member = text.partition(SEP)
    return bid, (member if sep else None)


@dataclass(frozen=True)
class Batch:
    id: str
    job_type: str
    total: int
    on_complete: tuple[str, dict[str, Any]] | None
    on_success: tuple[str, dict[str, Any]] | None = None
    key: str | None = None  # the members' key, when they were published with one
    parent: tuple[str, str] | None = None  # (batch id, member id) of a nested batch
    parent_job_id: str | None = None
    state: str = OPEN
    created_ms: int = 0
    closed_ms: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    # The callbacks' topics as the publisher resolved them: an owner whose own settings name
    # another topic for the job type (another worker group, other prefixes) still sends the
    # callback where the batch's publisher meant it to go.
    topics: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps({
            "v": VERSION, "id": self.id, "job_type": self.job_type, "total": self.total,
            "on_complete": list(self.on_complete) if self.on_complete else None,
            "on_success": list(self.on_success) if self.on_success else None,
            "key": self.key, "parent": list(self.parent) if self.parent else None,
            "parent_job_id": self.parent_job_id, "state": self.state,
            "created_ms": self.created_ms, "closed_ms": self.closed_ms, "counts": self.counts,
            "topics": self.topics,
        }, separators=(",", ":"), sort_keys=True).encode()

    def closed(self, counts: dict[str, int], now_ms: int) -> Batch:
        return replace(self, state=CLOSED, closed_ms=now_ms, counts=dict(counts))


def _callback(v: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], dict):
        return v[0], v[1]
    return None


def decode_batch(value: bytes | None) -> Batch | None:
    """The batch record; None for a tombstone or a value that is not one of ours."""
    if not value:
        return None
    try:
        d = json.loads(value)
        parent = d.get("parent")
        return Batch(
            id=str(d["id"]), job_type=str(d["job_type"]), total=int(d["total"]),
            on_complete=_callback(d.get("on_complete")),
            on_success=_callback(d.get("on_success")),
            key=d.get("key") if isinstance(d.get("key"), str) else None,
            parent=(str(parent[0]), str(parent[1])) if isinstance(parent, list)
            and len(parent) == 2 else None,
            parent_job_id=d.get("parent_job_id") if isinstance(d.get("parent_job_id"), str)
            else None,
            state=CLOSED if d.get("state") == CLOSED else OPEN,
            created_ms=int(d.get("created_ms") or 0),
            closed_ms=int(d["closed_ms"]) if d.get("closed_ms") is not None else None,
            counts={k: int(v) for k, v in (d.get("counts") or {}).items() if k in OUTCOMES},
            topics={k: v for k, v in (d.get("topics") or {}).items()
                    if k in ("complete", "success") and isinstance(v, str) and v},
        )
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def encode_member(outcome: str, at_ms: int) -> bytes:
    if outcome not in OUTCOMES:
        raise ValueError(f"a member's outcome is one of {OUTCOMES}, not {outcome!r}")
    return json.dumps({"o": outcome, "at": at_ms}, separators=(",", ":")).encode()


def decode_member(value: bytes | None) -> tuple[str, int] | None:
    """(outcome, finished ms); None for a tombstone or a value that is not one of ours."""
    if not value:
        return None
    try:
        d = json.loads(value)
        o = d["o"]
        return (o, int(d.get("at") or 0)) if o in OUTCOMES else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
