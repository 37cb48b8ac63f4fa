"""Admission checks for schemas: backward compatibility between consecutive versions
(the newer reads the older's data) and a doc on every field."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from schemas.registry import SchemaRegistry, SchemaVersion

_PROMOTIONS = {
    "int": {"int"},
    "long": {"int", "long"},
    "float": {"int", "long", "float"},
    "double": {"int", "long", "float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}


@dataclass(frozen=True)
class Problem:
    job_type: str
    where: str  # e.g. "v1 -> v2" or "v2"
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.job_type} {self.where}: field {self.field!r}: {self.reason}"


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        t = schema["type"]
        return _kind(t) if isinstance(t, (dict, list)) else str(t)
    return str(schema)


def _can_read(reader: Any, writer: Any, path: str, named: dict[str, Any]) -> str | None:
    """None when `reader` can read data written with `writer`, else the reason."""
    if isinstance(reader, str) and reader in named:
        reader = named[reader]
    if isinstance(writer, str) and writer in named:
        writer = named[writer]
    rk, wk = _kind(reader), _kind(writer)
    if wk == "union":
        for branch in writer:
            why = _can_read(reader, branch, path, named)
            if why:
                return why
        return None
    if rk == "union":
        if any(_can_read(b, writer, path, named) is None for b in reader):
            return None
        return f"writer type {wk} matches no branch of the reader's union"
    if isinstance(reader, dict) and isinstance(reader.get("type"), (dict, list)):
        return _can_read(reader["type"], writer, path, named)
    if isinstance(writer, dict) and isinstance(writer.get("type"), (dict, list)):
        return _can_read(reader, writer["type"], path, named)
    if rk in _PROMOTIONS:
        return None if wk in _PROMOTIONS[rk] else f"type changed from {wk} to {rk}"
    if rk != wk:
        return f"type changed from {wk} to {rk}"
    if rk == "record":
        return _record(reader, writer, path, named)
    if rk == "enum":
        missing = set(writer["symbols"]) - set(reader["symbols"])
        if missing and "default" not in reader:
            return f"enum symbols removed without a default: {sorted(missing)}"
    if rk == "array":
        return _can_read(reader["items"], writer["items"], path + "[]", named)
    if rk == "map":
        return _can_read(reader["values"], writer["values"], path + "{}", named)
    if rk == "fixed" and reader.get("size") != writer.get("size"):
        return "fixed size changed"
    return None


def _record(
    reader: dict[str, Any], writer: dict[str, Any], path: str, named: dict[str, Any]
) -> str | None:
    named.setdefault(reader.get("name", ""), reader)
    wfields = {f["name"]: f for f in writer["fields"]}
    for f in reader["fields"]:
        fpath = f"{path}.{f['name']}" if path else f["name"]
        wf = wfields.get(f["name"])
        if wf is None:
            for alias in f.get("aliases", []):
                wf = wfields.get(alias)
                if wf:
                    break
        if wf is None:
            if "default" not in f:
                return f"{fpath}: new field without a default"
            continue
        why = _can_read(f["type"], wf["type"], fpath, named)
        if why:
            return why if why.startswith(fpath) else f"{fpath}: {why}"
    return None


def _undocumented(schema: Any, path: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            for f in schema["fields"]:
                fpath = f"{path}.{f['name']}" if path else f["name"]
                if not str(f.get("doc", "")).strip():
                    out.append(fpath)
                out += _undocumented(f["type"], fpath)
        elif isinstance(schema.get("type"), (dict, list)):
            out += _undocumented(schema["type"], path)
        elif schema.get("type") == "array":
            out += _undocumented(schema["items"], path + "[]")
    elif isinstance(schema, list):
        for b in schema:
            out += _undocumented(b, path)
    return out


def check_pair(older: SchemaVersion, newer: SchemaVersion) -> Problem | None:
    why = _can_read(newer.raw, older.raw, "", {})
    if why is None:
        return None
    field, _, reason = why.partition(": ")
    if not reason:
        field, reason = "(record)", why
    return Problem(newer.job_type, f"v{older.version} -> v{newer.version}", field, reason)


def check_registry(registry: SchemaRegistry, job_types: list[str] | None = None) -> list[Problem]:
    problems: list[Problem] = []
    for jt in job_types or registry.job_types():
        versions = registry.versions(jt)
        for older, newer in itertools.pairwise(versions):
            p = check_pair(older, newer)
            if p:
                problems.append(p)
            if newer.version != older.version + 1:
                problems.append(
                    Problem(
                        jt,
                        f"v{older.version} -> v{newer.version}",
                        "(versions)",
                        "gap in version numbers",
                    )
                )
        for sv in versions:
            for field in _undocumented(sv.raw):
                problems.append(Problem(jt, f"v{sv.version}", field, "field has no doc"))
    return problems
