"""Taking dead letters out: `jobstream dlq export`, JSON lines with PII masked.

The file appears whole or not at all: rows go to a temporary file in the same directory
(readable by its owner only), which replaces the named file only after the audit record of
the export is written. A failed or interrupted export leaves the named file as it was and
is audited as such.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from jobstream.config.settings import Settings
from jobstream.consumers.ops import interrupt
from jobstream.consumers.ops.dlq import DeadLetter, DlqError, Filters, Result
from jobstream.consumers.ops.dlq_reader import ProgressCb, Reader, resolve_target, scan
from jobstream.schemas.registry import SchemaRegistry


def export_row(dl: DeadLetter, registry: SchemaRegistry, unmask: bool = False) -> dict[str, Any]:
    """One line of an export: the list view, every header, the payload as JSON (PII masked,
    bytes as base64) and the raw value as base64."""
    payload = dl.payload(registry, unmask)
    b64 = None if dl.value is None else base64.b64encode(dl.value).decode()
    row = {**dl.summary(), "headers": dl.headers, "payload": payload, "value_b64": b64}
    if isinstance(payload, str):
        row["value_hex_preview"] = dl.hex_preview()
    return row


def export(settings: Settings, target: str, filters: Filters, out_path: Path, *,
           unmask: bool = False, progress: ProgressCb | None = None,
           registry: SchemaRegistry | None = None, audit: bool = True) -> Result:
    """Matching dead letters as JSON lines (with a limit, the oldest N by failure time)."""
    from jobstream.consumers.ops.audit import record_operation

    t = resolve_target(settings, target)
    registry = registry or SchemaRegistry.from_dirs(settings.schema_dirs)
    result = Result("export", t.dlq, str(out_path))
    r = Reader(settings, t.dlq)
    extra = {"unmask": unmask}
    tmp: Path | None = None
    audited = False
    error: str | None = None
    stopped_by: str | None = None
    try:
        try:
            fd, name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".partial",
                                        dir=out_path.parent)
            tmp = Path(name)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for dl in scan(settings, t.dlq, filters, progress=progress, reader=r):
                    line = json.dumps(export_row(dl, registry, unmask), ensure_ascii=False,
                                      allow_nan=False)
                    with interrupt.held():
                        f.write(line + "\n")
                        result.matched += 1
            result.exported = result.matched
            result.covered = dict(r.covered)
            if audit:  # before the file appears: an export nobody audited must not exist
                record_operation(settings, result, filters, extra)
                audited = True
            os.replace(tmp, out_path)
            tmp = None
        except OSError as e:
            raise DlqError(f"cannot write {out_path}: {e.strerror or e}") from None
        return result
    except BaseException as e:
        stopped_by = interrupt.signal_name(e)
        error = None if stopped_by else (str(e) or type(e).__name__)
        if isinstance(e, interrupt.Interrupted):
            e.result = result
        raise
    finally:
        interrupt.wrap_up()
        if tmp is not None:
            tmp.unlink(missing_ok=True)
            result.exported = 0
        result.covered = dict(r.covered)
        r.close()
        if audit and (not audited or tmp is not None):  # not audited, or the file never came
            record_operation(settings, result, filters, extra, error=error,
                             interrupted=stopped_by)
