"""Sample data for a schema that takes every union branch and every enum symbol at least once:
what `schemas check` feeds fastavro's reader to try an older version's data on a newer one."""

from __future__ import annotations

import datetime
import decimal
import io
import uuid
from typing import Any

import fastavro

# Below this depth a union takes its null branch and arrays and maps are empty, so recursive
# types (a record holding an optional copy of itself) stay finite.
_MAX_DEPTH = 4
_NAMED = {"record", "enum", "fixed", "error"}


def samples(raw: dict[str, Any]) -> list[bytes]:
    """Encoded samples of `raw`, each with fastavro's public writer. A sample this generator
    cannot make valid for an exotic logical type is left out rather than guessed."""
    named: dict[str, Any] = {}
    parsed = fastavro.parse_schema(raw, named, _write_hint=False)
    out = []
    for k in range(max(2, _widest(parsed, named, set()))):
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, parsed, _value(parsed, named, k, 0))
        except (TypeError, ValueError, AttributeError, OverflowError):
            continue
        out.append(buf.getvalue())
    return out


def _widest(s: Any, named: dict[str, Any], seen: set[str]) -> int:
    """The most branches of any union, or symbols of any enum, in the schema."""
    if isinstance(s, str):
        if s in named and s not in seen:
            seen.add(s)
            return _widest(named[s], named, seen)
        return 0
    if isinstance(s, list):
        return max([len(s), *(_widest(b, named, seen) for b in s)])
    t = s.get("type")
    if isinstance(t, (dict, list)):
        return _widest(t, named, seen)
    if t in _NAMED:
        seen.add(s["name"])
    if t == "enum":
        return len(s["symbols"])
    if t in ("record", "error"):
        return max([0, *(_widest(f["type"], named, seen) for f in s["fields"])])
    if t == "array":
        return _widest(s["items"], named, seen)
    if t == "map":
        return _widest(s["values"], named, seen)
    return 0


def _label(branch: Any) -> str:
    """The name fastavro's tuple notation ("name", value) picks a union branch by."""
    if isinstance(branch, dict):
        return str(branch["name"] if branch.get("type") in _NAMED else branch["type"])
    return str(branch)


def _value(s: Any, named: dict[str, Any], k: int, depth: int) -> Any:
    if depth > 5 * _MAX_DEPTH:
        raise ValueError("no finite sample: a record that always holds itself")
    if isinstance(s, str) and s in named:
        s = named[s]
    if isinstance(s, list):
        branch = s[k % len(s)]
        if depth >= _MAX_DEPTH and "null" in s:
            branch = "null"
        # Tuple notation: the branch is named, never guessed from the value's Python type.
        return (_label(branch), _value(branch, named, k, depth + 1))
    if isinstance(s, dict):
        t = s["type"]
        if isinstance(t, (dict, list)):
            return _value(t, named, k, depth)
        logical = s.get("logicalType")
        if logical:
            got = _logical(logical, s, k)
            if got is not None:
                return got
        if t in ("record", "error"):
            return {f["name"]: _value(f["type"], named, k, depth + 1) for f in s["fields"]}
        if t == "enum":
            return s["symbols"][k % len(s["symbols"])]
        if t == "fixed":
            return bytes(s["size"])
        if t == "array":
            return [] if depth >= _MAX_DEPTH else [_value(s["items"], named, k, depth + 1)]
        if t == "map":
            return {} if depth >= _MAX_DEPTH else {"k": _value(s["values"], named, k, depth + 1)}
        s = t
    return _PRIMITIVE[s](k)


def _logical(logical: str, s: dict[str, Any], k: int) -> Any:
    if logical == "decimal":
        return decimal.Decimal(k).scaleb(-int(s.get("scale", 0)))
    if logical == "uuid":
        return str(uuid.UUID(int=k))
    if logical == "date":
        return datetime.date(2020, 1, 1) + datetime.timedelta(days=k)
    return None  # times and timestamps take plain numbers


_PRIMITIVE: dict[str, Any] = {
    "null": lambda k: None,
    "boolean": lambda k: k % 2 == 0,
    "int": lambda k: k,
    "long": lambda k: k,
    "float": lambda k: k + 0.5,
    "double": lambda k: k + 0.5,
    "bytes": lambda k: bytes([k % 256]),
    "string": lambda k: f"s{k}",
}
