"""The context a handler receives next to its payload."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas import wire


@dataclass(frozen=True)
class JobContext:
    job_id: str
    job_type: str
    attempt: int
    key: str | None
    headers: Mapping[str, str]
    log: Any  # a structlog logger bound to the job's fields
    parent_job_id: str | None = None
    traceparent: str | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    enqueued_at_ms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trace_id(self) -> str | None:
        """The W3C trace id (32 hex digits) from traceparent, if any."""
        return wire.trace_id(self.traceparent)

    @property
    def span_id(self) -> str | None:
        parts = (self.traceparent or "").split("-")
        return parts[2] if len(parts) == 4 and len(parts[2]) == 16 else None
