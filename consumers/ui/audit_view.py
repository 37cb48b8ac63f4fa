"""The audit page's data: the hash chain verified incrementally (each page load feeds only the
records appended since the last one into the same Verifier, as `audit verify` would walk them
from the start) and the newest records kept for the list."""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any

from jobstream.config.settings import Settings
from jobstream.config.topics import AUDIT_TOPIC
from jobstream.consumers.ops.audit_chain import Report, _decode
from jobstream.consumers.ops.dlq_reader import Reader, list_topics
from jobstream.schemas.chain import Verifier

KEEP = 1000  # newest records kept for the list (the page shows at most this many)


def _as_record(offset: int, value: bytes | None) -> dict[str, Any]:
    try:
        rec = json.loads(value or b"")
    except ValueError:
        return {"error": "not a JSON audit record", "offset": offset}
    return rec if isinstance(rec, dict) else {"error": "not a JSON object", "offset": offset}


class AuditView:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._verifier: Verifier | None = None
        self._next = 0
        self._low = 0
        self._recent: deque[dict[str, Any]] = deque(maxlen=KEEP)

    def refresh(self) -> tuple[Report, list[dict[str, Any]]]:
        """The chain's report and the newest records, oldest first."""
        with self._lock:
            if AUDIT_TOPIC not in list_topics(self.settings):
                return Report(AUDIT_TOPIC, 0, 0, Verifier()), []
            r = Reader(self.settings, AUDIT_TOPIC, group="jobstream-audit-verify")
            try:
                lo, hi = r.bounds()[0]
                if self._verifier is None or hi < self._next:  # first load, or recreated
                    self._verifier = Verifier(starts_mid_chain=lo > 0)
                    self._next, self._low = lo, lo
                    self._recent.clear()
                for rec in r.read({0: self._next}, {0: hi}):
                    self._verifier.feed(rec.offset, _decode(rec.value))
                    self._recent.append(_as_record(rec.offset, rec.value))
                self._next = max(self._next, hi)
            finally:
                r.close()
            return Report(AUDIT_TOPIC, self._low, hi, self._verifier), list(self._recent)
