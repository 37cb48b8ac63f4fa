"""Payloads as shown to people: PII masked by walking the Avro schema together with the value
(records, arrays, maps, unions, named-type references, recursion), and values made JSON-safe.

A field marked `"pii": true` is replaced by "***" whatever its type, containers included.
Masking follows the schema, not field paths, so PII inside map values, lists of lists or a
union branch is found. Where the value does not show which union branch it is (two record
branches that both fit), every fitting branch masks it: never less than either would.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

MASK = "***"
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def mask(schema: Any, value: Any) -> Any:
    """A copy of value (decoded with this schema) with every PII field replaced by "***"."""
    walker = _Walker()
    walker.collect(schema, "")
    return walker.walk(schema, value, "")


_NAMED = ("record", "error", "enum", "fixed")


def _full_name(schema: dict[str, Any], ns: str) -> tuple[str, str]:
    """(full name, namespace for what is nested inside) of a named type."""
    name = str(schema.get("name", ""))
    if "." in name:
        return name, name.rsplit(".", 1)[0]
    ns = str(schema.get("namespace", ns) or "")
    return (f"{ns}.{name}" if ns else name), ns


class _Walker:
    def __init__(self) -> None:
        self.names: dict[str, Any] = {}  # full name -> named schema

    def collect(self, schema: Any, ns: str) -> None:
        """Every named type, first: a reference may be met before (or without) the value
        passing through its definition, e.g. in a union branch that is null here."""
        if isinstance(schema, list):
            for branch in schema:
                self.collect(branch, ns)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in _NAMED:
                full, ns = _full_name(schema, ns)
                if full in self.names:
                    return
                self.names[full] = schema
            for f in schema.get("fields", []) if kind in ("record", "error") else ():
                if isinstance(f, dict):
                    self.collect(f.get("type"), ns)
            for part in ("items", "values"):
                if part in schema:
                    self.collect(schema[part], ns)
            if isinstance(kind, (dict, list)):
                self.collect(kind, ns)

    def lookup(self, name: str, ns: str) -> tuple[Any, str] | None:
        for candidate in ((f"{ns}.{name}" if ns and "." not in name else name), name):
            if candidate in self.names:
                schema = self.names[candidate]
                return schema, _full_name(schema, ns)[1]
        return None

    def walk(self, schema: Any, value: Any, ns: str) -> Any:
        if isinstance(schema, list):
            return self._union(schema, value, ns)
        if isinstance(schema, str):
            found = None if schema in _PRIMITIVES else self.lookup(schema, ns)
            return value if found is None else self.walk(found[0], value, found[1])
        if not isinstance(schema, dict):
            return value
        kind = schema.get("type")
        if kind in ("record", "error"):
            return self._record(schema, value, _full_name(schema, ns)[1])
        if kind == "array":
            items = schema.get("items")
            return [self.walk(items, v, ns) for v in value] if isinstance(value, list) else value
        if kind == "map":
            values = schema.get("values")
            if isinstance(value, Mapping):
                return {k: self.walk(values, v, ns) for k, v in value.items()}
            return value
        if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in _PRIMITIVES
                                              and kind not in _NAMED):
            return self.walk(kind, value, ns)  # {"type": <another schema or a name>}
        return value  # primitives (logical types too), enum, fixed

    def _record(self, schema: dict[str, Any], value: Any, ns: str) -> Any:
        if not isinstance(value, Mapping):
            return value
        fields = {f["name"]: f for f in schema.get("fields", []) if isinstance(f, dict)}
        out: dict[str, Any] = {}
        for k, v in value.items():
            f = fields.get(k)
            # a key the schema does not name: nothing says it is safe to show
            out[k] = MASK if f is None or f.get("pii") is True else self.walk(f.get("type"), v, ns)
        return out

    def _union(self, branches: list[Any], value: Any, ns: str) -> Any:
        out = value
        for branch in branches:
            if self._fits(branch, value, ns):
                out = self.walk(branch, out, ns)
        return out

    def _fits(self, schema: Any, value: Any, ns: str) -> bool:
        """Could value be of this union branch? Only containers matter for masking."""
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            found = self.lookup(schema, ns)
            if found is None:
                return False
            schema = found[0]
        kind = schema.get("type") if isinstance(schema, dict) else schema
        if kind in ("record", "error"):
            names = {f.get("name") for f in schema.get("fields", []) if isinstance(f, dict)}
            return isinstance(value, Mapping) and set(value) <= names
        if kind == "map":
            return isinstance(value, Mapping)
        if kind == "array":
            return isinstance(value, list)
        return False  # primitives, enums, fixed: nothing inside to mask


def json_safe(value: Any) -> Any:
    """Decoded Avro values as JSON: bytes and fixed as base64 (standard alphabet, padded),
    decimals as exact strings, UUIDs, dates and times as ISO 8601 strings, NaN and the
    infinities as "NaN", "Infinity", "-Infinity" (JSON has no such numbers)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    return value
