"""Versioned Avro schemas: `<dir>/<job_type>/v<N>.avsc`, encode with the newest version,
decode any known writer version into the newest reader version."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import fastavro._read as fastavro_read
import fastavro._write as fastavro_write
from fastavro.types import Schema

from jobstream.schemas.masking import MASK, mask
from jobstream.schemas.strict import StrictError, compile_scan
from jobstream.schemas.validate import PayloadError, compile_validator

# jobstream's own records (the ledger); job types come only from schema_dirs.
INTERNAL_DIR = Path(__file__).parent / "internal"
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


class SchemaError(ValueError):
    """A schema file or the schema set is wrong."""


class UnknownJobType(KeyError):
    def __str__(self) -> str:
        return f"unknown job type {self.args[0]!r}: no schema directory for it"


class DecodeError(ValueError):
    """Bytes that cannot be read as the named job type and version."""


@dataclass(frozen=True)
class SchemaVersion:
    job_type: str
    version: int
    path: Path
    raw: dict[str, Any]
    parsed: Schema
    pii: frozenset[str] = field(default_factory=frozenset)


def _pii_paths(schema: Any, prefix: str = "") -> set[str]:
    """Dotted paths of record fields marked "pii": true (nested records included)."""
    out: set[str] = set()
    if isinstance(schema, list):
        for branch in schema:
            out |= _pii_paths(branch, prefix)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            for f in schema.get("fields", []):
                path = f"{prefix}{f['name']}"
                if f.get("pii") is True:
                    out.add(path)
                out |= _pii_paths(f["type"], path + ".")
        elif schema.get("type") == "array":
            out |= _pii_paths(schema.get("items"), prefix)
        elif schema.get("type") == "map":
            out |= _pii_paths(schema.get("values"), prefix)
    return out


def load_version(job_type: str, path: Path) -> SchemaVersion:
    m = _VERSION_FILE.match(path.name)
    if not m:
        raise SchemaError(f"{path}: schema files must be named v<N>.avsc")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SchemaError(f"{path}: cannot read schema: {e}") from None
    try:
        parsed = fastavro.parse_schema(raw, _write_hint=False)
    except Exception as e:  # fastavro raises several types for bad schemas
        raise SchemaError(f"{path}: not a valid Avro schema: {e}") from None
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise SchemaError(f"{path}: a job payload schema must be an Avro record")
    return SchemaVersion(job_type, int(m.group(1)), path, raw, parsed, frozenset(_pii_paths(raw)))


_Reader = Callable[[io.BytesIO], Any]


def _framing(data: bytes) -> str:
    """A hint for bytes that start like Confluent Schema Registry framing (magic byte 0 and a
    4-byte schema id), which jobstream values do not carry."""
    if len(data) < 5 or data[0] != 0 or not 0 < int.from_bytes(data[1:5], "big") < 2**31:
        return ""
    return (
        f"; it starts like Confluent Schema Registry framing (magic byte 0, schema id "
        f"{int.from_bytes(data[1:5], 'big')}), but jobstream values are plain Avro without it"
    )


class SchemaRegistry:
    """All known job types and their schema versions, from the schema directories given."""

    def __init__(self, versions: Mapping[str, Mapping[int, SchemaVersion]]) -> None:
        self._versions = {jt: dict(sorted(v.items())) for jt, v in versions.items()}
        self._latest = {jt: list(v.values())[-1] for jt, v in self._versions.items() if v}
        # Built once: publishing validates and encodes every payload, so each must cost
        # microseconds.
        self._validate = {jt: compile_validator(sv.raw, sv.pii) for jt, sv in self._latest.items()}
        self._write = {jt: avro_writer(sv.raw) for jt, sv in self._latest.items()}
        # built when used: the strict pass and the reader of each writer version
        self._read: dict[tuple[str, int], tuple[Callable[[bytes], int], _Reader]] = {}

    @classmethod
    def from_dirs(cls, dirs: Iterable[Path] = ()) -> SchemaRegistry:
        found: dict[str, dict[int, SchemaVersion]] = {}
        for root in (Path(d) for d in dirs):
            if not root.is_dir():
                raise SchemaError(f"schema directory {root} does not exist")
            for job_dir in sorted(p for p in root.iterdir() if p.is_dir()):
                for path in sorted(job_dir.glob("*.avsc")):
                    sv = load_version(job_dir.name, path)
                    prior = found.setdefault(job_dir.name, {}).get(sv.version)
                    if prior is not None and prior.raw != sv.raw:
                        raise SchemaError(
                            f"{job_dir.name} v{sv.version} defined twice and differently: "
                            f"{prior.path} and {path}"
                        )
                    found[job_dir.name][sv.version] = sv
        return cls(found)

    def job_types(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, job_type: str) -> list[SchemaVersion]:
        try:
            return list(self._versions[job_type].values())
        except KeyError:
            raise UnknownJobType(job_type) from None

    def latest(self, job_type: str) -> SchemaVersion:
        try:
            return self._latest[job_type]
        except KeyError:
            raise UnknownJobType(job_type) from None

    def get(self, job_type: str, version: int) -> SchemaVersion:
        try:
            return self._versions[job_type][version]
        except KeyError:
            if job_type not in self._versions:
                raise UnknownJobType(job_type) from None
            raise DecodeError(
                f"unknown schema version {version} for job type {job_type!r} "
                f"(known: {[v.version for v in self.versions(job_type)]})"
            ) from None

    def encode(self, job_type: str, payload: Any) -> tuple[int, bytes]:
        """Validate against the newest version and encode; PayloadError names the field."""
        sv = self.latest(job_type)
        self._validate[job_type](payload)
        return sv.version, self._write[job_type](payload)

    def decode(self, job_type: str, version: int, data: bytes) -> dict[str, Any]:
        """Read bytes written with `version` into the newest version of the job type. The
        bytes must be exactly one value of the writer schema (see schemas/strict.py)."""
        pair = self._read.get((job_type, version))
        if pair is None:
            writer = self.get(job_type, version)
            reader = self.latest(job_type)
            same = writer.version == reader.version
            pair = self._read[(job_type, version)] = (
                compile_scan(writer.raw),
                avro_reader(writer.raw, None if same else reader.raw),
            )
        scan, read = pair
        try:
            end = scan(data)
            if end == len(data):
                buf = io.BytesIO(data)
                out = read(buf)
                if buf.tell() == len(data) and isinstance(out, dict):
                    return out
        except StrictError as e:
            raise DecodeError(
                f"cannot decode {job_type} v{version} payload ({len(data)} bytes): {e}"
                f"{_framing(data)}"
            ) from None
        except Exception as e:  # bad UTF-8, or what the strict pass let through
            raise DecodeError(
                f"cannot decode {job_type} v{version} payload ({len(data)} bytes): "
                f"{type(e).__name__}: {e}"
            ) from None
        n = len(data) - end
        if n:
            raise DecodeError(
                f"{job_type} v{version} payload has {n} trailing byte{'s' * (n != 1)}"
                f"{_framing(data)}"
            )
        raise DecodeError(f"{job_type} v{version} payload is not exactly one record")

    def mask(self, job_type: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """A copy with every PII field replaced by '***' (for logs and CLI output), found by
        walking the newest schema (schemas/masking.py); with no schema, every field."""
        if job_type not in self._versions:
            return {k: MASK for k in payload}
        return dict(mask(self.latest(job_type).raw, payload))


def avro_writer(raw: dict[str, Any]) -> Callable[[Any], bytes]:
    """schemaless_writer for one schema. fastavro's schemaless_writer re-parses its schema on
    every call (~5 us, four times the write itself); its write_data does the write alone. That
    one is internal API, so where it is missing or its signature moved, the public path runs
    (tests/unit/test_validate.py compares the two byte for byte)."""
    named: dict[str, Any] = {}
    parsed = fastavro.parse_schema(raw, named)

    def public(payload: Any) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, payload)
        return buf.getvalue()

    write_data = getattr(fastavro_write, "write_data", None)
    if write_data is None:
        return public

    def direct(payload: Any) -> bytes:
        out = bytearray()
        try:
            write_data(out, payload, parsed, named, "", {})
        except (TypeError, AttributeError, KeyError):
            return public(payload)  # a moved signature, or bad data: the public path decides
        return bytes(out)

    return direct


_READ_OPTIONS = {  # what schemaless_reader passes by default
    "return_record_name": False,
    "return_record_name_override": False,
    "handle_unicode_errors": "strict",
    "return_named_type": False,
    "return_named_type_override": False,
}


def avro_reader(
    writer_raw: dict[str, Any], reader_raw: dict[str, Any] | None = None
) -> Callable[[io.BytesIO], Any]:
    """schemaless_reader for one writer (and reader) schema, parsed once: like the writer
    above, it skips the re-parse on every call through fastavro's internal _read_data, with
    the public path where that is missing or its signature moved."""
    named: dict[str, dict[str, Any]] = {"writer": {}, "reader": {}}
    writer = fastavro.parse_schema(writer_raw, named["writer"])
    reader = None if reader_raw is None else fastavro.parse_schema(reader_raw, named["reader"])

    def public(buf: io.BytesIO) -> Any:
        return fastavro.schemaless_reader(buf, writer, reader)

    read_data = getattr(fastavro_read, "_read_data", None)
    if read_data is None:
        return public

    def direct(buf: io.BytesIO) -> Any:
        start = buf.tell()
        try:
            return read_data(buf, writer, named, reader, _READ_OPTIONS)
        except TypeError:
            buf.seek(start)  # a moved signature, or bad data: the public path decides
            return public(buf)

    return direct


__all__ = [
    "DecodeError",
    "PayloadError",
    "SchemaError",
    "SchemaRegistry",
    "SchemaVersion",
    "UnknownJobType",
]
