"""docs/wire-format.md read as data: its test vectors, its tables, the example command, and
Python builders of the malformed records it lists. The unit test (tests/unit/test_wire_vectors.py)
and the Java integration test (tests/integration/test_java_publisher.py) both read the page
through this module, so neither can drift from it."""

from __future__ import annotations

import io
import json
import re
import shlex
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from jobstream.schemas import partitioner, wire

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "wire-format.md"
JOB_TYPE = "test.wire"

Record = tuple[bytes | None, bytes | None, wire.HeaderList]  # key, value, headers


def _text() -> str:
    return PAGE.read_text(encoding="utf-8")


def vectors() -> list[dict[str, Any]]:
    """The JSON blocks marked <!-- vector --> on the page."""
    blocks = re.findall(r"<!-- vector -->\s*```json\n(.*?)\n```", _text(), re.DOTALL)
    if not blocks:
        raise AssertionError(f"no test vectors found in {PAGE}")
    return [json.loads(b) for b in blocks]


def table(name: str) -> list[list[str]]:
    """The body rows of the table between <!-- table: NAME --> and <!-- end table -->, each
    cell stripped of spaces."""
    m = re.search(rf"<!-- table: {name} -->\n(.*?)<!-- end table -->", _text(), re.DOTALL)
    if m is None:
        raise AssertionError(f"no table {name!r} in {PAGE}")
    rows = [line.strip().strip("|").split("|") for line in m.group(1).splitlines()]
    return [[c.strip() for c in row] for row in rows[2:] if row and row[0]]


def ticked(cell: str) -> list[str]:
    """The `quoted` parts of a table cell."""
    return re.findall(r"`([^`]*)`", cell)


def header_levels() -> dict[str, str]:
    """Publisher header -> MUST | SHOULD | MAY."""
    return {ticked(row[0])[0]: row[1] for row in table("job-headers")}


def worker_headers() -> list[str]:
    return [ticked(row[0])[0] for row in table("worker-headers")]


def malformed_kinds() -> dict[str, tuple[str, list[str]]]:
    """Kind -> (js-error-category, the message fragments any one of which it contains)."""
    return {
        ticked(row[0])[0]: (ticked(row[2])[0], ticked(row[3])) for row in table("malformed")
    }


def example_command() -> list[str]:
    """The `java -jar ...` example of the page's last section, as arguments."""
    m = re.search(r"```\n(java -jar .*?)\n```", _text(), re.DOTALL)
    if m is None:
        raise AssertionError(f"no java -jar example in {PAGE}")
    return shlex.split(m.group(1).replace("\\\n", " "))


def raw_headers(vector: dict[str, Any]) -> wire.HeaderList:
    return [(k, v.encode("utf-8")) for k, v in vector["headers"]]


def unhex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 as Java returns it: a signed 32-bit int."""
    h = partitioner.murmur2(data)
    return h - (1 << 32) if h & 0x80000000 else h


partition_for = partitioner.partition_for


# -- malformed records, built the way the Java example builds them ----------------------------


def _set(headers: wire.HeaderList, name: str, value: str | None) -> wire.HeaderList:
    out = [(k, v) for k, v in headers if k != name]
    return out if value is None else [*out, (name, value.encode())]


def _container(schema: dict[str, Any], payload: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), [payload])
    return buf.getvalue()


def _single_object(schema: dict[str, Any], datum: bytes) -> bytes:
    canonical = to_parsing_canonical_form(fastavro.parse_schema(schema))
    fp = int(fingerprint(canonical, "CRC-64-AVRO"), 16)
    return b"\xc3\x01" + struct.pack("<Q", fp) + datum


Mutation = Callable[[Record, dict[str, Any], dict[str, Any], int], Record]


def _h(name: str, value: str | None) -> Mutation:
    return lambda r, _s, _p, _n: (r[0], r[1], _set(r[2], name, value))


def _v(make: Callable[[bytes, dict[str, Any], dict[str, Any]], bytes | None]) -> Mutation:
    return lambda r, s, p, _n: (r[0], make(r[1] or b"", s, p), r[2])


MALFORMED: dict[str, Mutation] = {
    "missing-job-id": _h(wire.JOB_ID, None),
    "empty-job-id": _h(wire.JOB_ID, ""),
    "missing-job-type": _h(wire.JOB_TYPE, None),
    "missing-schema-version": _h(wire.SCHEMA_VERSION, None),
    "bad-schema-version": _h(wire.SCHEMA_VERSION, "two"),
    "zero-schema-version": _h(wire.SCHEMA_VERSION, "0"),
    "unknown-schema-version": lambda r, _s, _p, newest: (
        r[0], r[1], _set(r[2], wire.SCHEMA_VERSION, str(newest + 1))
    ),
    "bad-attempt": _h(wire.ATTEMPT, "first"),
    "bad-enqueued-at": _h(wire.ENQUEUED_AT, "2026-01-01T00:00:00Z"),
    "unknown-job-type": _h(wire.JOB_TYPE, "no.such.job.type"),
    "no-value": _v(lambda _d, _s, _p: None),
    "truncated-avro": _v(lambda d, _s, _p: d[:-1]),
    "trailing-bytes": _v(lambda d, _s, _p: d + b"\0"),
    "confluent-framed": _v(lambda d, _s, _p: b"\0" + (1).to_bytes(4, "big") + d),
    "avro-container-file": _v(lambda _d, s, p: _container(s, p)),
    "single-object-encoding": _v(lambda d, s, _p: _single_object(s, d)),
}


def malformed(
    kind: str, good: Record, schema: dict[str, Any], payload: dict[str, Any], newest: int
) -> Record:
    """The good record (written with `schema` from `payload`) with the kind's one fault."""
    return MALFORMED[kind](good, schema, payload, newest)
