"""The audit log of operator actions: one JSON record per replay (dry runs included), export
and unmasked show in the `jobstream.audit` topic (1 partition, kept forever, hash-chained),
read back by `jobstream audit list` and checked by `jobstream audit verify`. Its status is
completed, failed or interrupted (with the signal)."""

from __future__ import annotations

import getpass
import json
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from jobstream.config.kafka import client_config
from jobstream.config.logging import get_logger
from jobstream.config.settings import Settings
from jobstream.config.topics import AUDIT_SPEC, AUDIT_TOPIC
from jobstream.consumers.ops.dlq import DlqError, Filters, Result
from jobstream.consumers.ops.dlq_reader import QUIET, Reader, list_topics

log = get_logger("jobstream.audit")


def who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers (no USER, uid not in passwd)
        return "unknown"


def ensure_audit_topic(settings: Settings, topics: dict[str, int] | None = None) -> None:
    topics = list_topics(settings) if topics is None else topics
    if AUDIT_TOPIC in topics:
        return
    admin = AdminClient(client_config(settings.kafka, logger=QUIET))
    spec = AUDIT_SPEC
    fut = admin.create_topics([NewTopic(spec.name, spec.partitions, 1, config=spec.config)],
                              request_timeout=15)[AUDIT_TOPIC]
    try:
        fut.result(timeout=20)
    except KafkaException as e:
        err = e.args[0] if e.args else None
        # Another operator's command may have created it a moment ago.
        if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise DlqError(f"cannot create {AUDIT_TOPIC}: {err}") from None


def build_record(result: Result, filters: Filters, extra: dict[str, Any] | None = None,
                 error: str | None = None, interrupted: str | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "user": who(),
        "host": socket.gethostname(),
        "command": result.command,
        "dry_run": result.dry_run,
        "target": result.source,
        "destination": result.destination,
        "filters": filters.describe(),
        "counts": result.counts(),
        "offsets": {str(p): {"first": first, "last": last}
                    for p, (first, last) in sorted(result.covered.items())},
        "status": "interrupted" if interrupted else "failed" if error else "completed",
    }
    if interrupted:
        rec["signal"] = interrupted
    if error:
        rec["error"] = error
    rec.update({k: v for k, v in (extra or {}).items() if v is not None})
    return rec


def write_audit(settings: Settings, record: dict[str, Any]) -> dict[str, Any]:
    """Append one audit record, linked into the topic's hash chain (audit_chain.py), once the
    broker has acknowledged it; the record as written."""
    from jobstream.consumers.ops.audit_chain import append

    ensure_audit_topic(settings)
    return append(settings, str(record["command"]).encode(), record)


def record_operation(settings: Settings, result: Result, filters: Filters,
                     extra: dict[str, Any] | None = None, error: str | None = None,
                     interrupted: str | None = None) -> None:
    """Audit a finished, failed or interrupted operation. When the operation itself failed or
    was interrupted, a failing audit write must not hide that, so it is logged, not raised."""
    record = build_record(result, filters, extra, error, interrupted)
    try:
        write_audit(settings, record)
    except (DlqError, KafkaException) as e:
        if error is None and interrupted is None:
            raise
        log.warning("audit record not written", command=result.command,
                    target=result.source, error=str(e))


def list_audit(settings: Settings, limit: int = 50) -> list[dict[str, Any]]:
    """The newest `limit` audit records, oldest first; [] when nothing was audited yet."""
    if AUDIT_TOPIC not in list_topics(settings):
        return []
    r = Reader(settings, AUDIT_TOPIC)
    rows: list[tuple[int, int, dict[str, Any]]] = []
    try:
        bounds = r.bounds()
        starts = {p: max(lo, hi - limit) for p, (lo, hi) in bounds.items()}
        for dl in r.read(starts, {p: hi for p, (_, hi) in bounds.items()}):
            try:
                rec = json.loads(dl.value or b"")
            except ValueError:
                rec = {"error": "not a JSON audit record", "offset": dl.offset}
            if not isinstance(rec, dict):
                rec = {"error": "not a JSON object", "offset": dl.offset}
            rows.append((dl.timestamp or 0, dl.offset, rec))
    finally:
        r.close()
    rows.sort(key=lambda row: (row[0], row[1]))
    return [rec for _, _, rec in rows[-limit:]]
