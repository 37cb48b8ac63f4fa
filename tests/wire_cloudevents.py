"""The CloudEvents part of docs/wire-format.md read as data (its vectors and tables), and
builders of the malformed CloudEvents it lists. The unit test (tests/unit/test_cloudevents.py)
and the integration test (tests/integration/test_cloudevents_e2e.py) both read the page through
this module, so neither can drift from it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from jobstream.schemas import cloudevents as ce
from jobstream.schemas import wire
from tests import wire_vectors as wv

JOB_TYPE = wv.JOB_TYPE
ACCEPTS: dict[str, tuple[str, ...]] = {JOB_TYPE: (ce.JOBSTREAM, ce.CLOUDEVENTS)}
PLAIN: dict[str, tuple[str, ...]] = {JOB_TYPE: (ce.JOBSTREAM,)}  # the default setting
NOT_ACCEPTED = "ce-not-accepted"  # the one kind sent to a job type with the default setting

Record = wv.Record


def vectors() -> list[dict[str, Any]]:
    """The JSON blocks marked <!-- cloudevents-vector --> on the page."""
    blocks = re.findall(
        r"<!-- cloudevents-vector -->\s*```json\n(.*?)\n```", wv.PAGE.read_text("utf-8"), re.DOTALL
    )
    if not blocks:
        raise AssertionError(f"no CloudEvents vectors found in {wv.PAGE}")
    return [json.loads(b) for b in blocks]


def good() -> Record:
    """The first CloudEvents vector as a record: key, value, headers."""
    v = vectors()[0]
    return wv.unhex(v["key_hex"]), wv.unhex(v["value_hex"]), wv.raw_headers(v)


def header_table() -> dict[str, str]:
    """ce header -> the js-* header it maps to (or "(none)")."""
    rows = wv.table("cloudevents-headers")
    return {wv.ticked(r[0])[0]: (wv.ticked(r[2]) or ["(none)"])[0] for r in rows}


def malformed_kinds() -> dict[str, tuple[str, list[str]]]:
    """Kind -> (category, the message parts it may contain: any one)."""
    return {
        wv.ticked(r[0])[0]: (wv.ticked(r[2])[0], wv.ticked(r[3]))
        for r in wv.table("cloudevents-malformed")
    }


Mutation = Callable[[Record], Record]


def _h(name: str, value: str | None) -> Mutation:
    return lambda r: (r[0], r[1], wv._set(r[2], name, value))


MALFORMED: dict[str, Mutation] = {
    "ce-missing-specversion": _h(ce.SPECVERSION, None),
    "ce-bad-specversion": _h(ce.SPECVERSION, "0.3"),
    "ce-missing-id": _h(ce.ID, None),
    "ce-missing-type": _h(ce.TYPE, None),
    "ce-missing-dataschema": _h(ce.DATASCHEMA, None),
    "ce-bad-dataschema": _h(ce.DATASCHEMA, "https://schemas.example.com/test.wire/latest"),
    "ce-bad-time": _h(ce.TIME, "1767225600000"),
    "ce-time-without-zone": _h(ce.TIME, "2026-01-01T00:00:00"),
    "ce-bad-traceparent": _h(ce.TRACEPARENT, "not-a-trace"),
    "ce-json-content-type": _h(ce.CONTENT_TYPE, "application/json"),
    "ce-unknown-type": _h(ce.TYPE, "no.such.job.type"),
    NOT_ACCEPTED: lambda r: r,  # a good CloudEvent, where the setting lacks cloudevents
}


def accepts_for(kind: str) -> dict[str, tuple[str, ...]]:
    """The `accept` settings of the worker the kind is sent to."""
    return PLAIN if kind == NOT_ACCEPTED else ACCEPTS


def malformed(kind: str, record: Record | None = None) -> Record:
    return MALFORMED[kind](record or good())


def header_dict(record: Record) -> dict[str, str]:
    return wire.decode_headers(record[2])
