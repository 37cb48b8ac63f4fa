"""Payload validation that names the field: `payload.items[2].sku: expected string, got int`.

fastavro's own validator accepts unknown fields and names types, not paths; a publisher's
user needs the path, and an unknown field is almost always a typo worth refusing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


class PayloadError(ValueError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


class _Checker:
    def __init__(self, pii: frozenset[str]) -> None:
        self.names: dict[str, Any] = {}
        self.pii = pii

    def _register(self, schema: dict[str, Any], namespace: str | None) -> str | None:
        name = schema.get("name")
        if not name:
            return namespace
        ns = schema.get("namespace", namespace)
        full = name if "." in name or not ns else f"{ns}.{name}"
        self.names[full] = schema
        self.names[name.rsplit(".", 1)[-1]] = schema
        return full.rsplit(".", 1)[0] if "." in full else ns

    def fits(self, schema: Any, value: Any, ns: str | None) -> bool:
        try:
            self.check(schema, value, "", ns, "")
        except PayloadError:
            return False
        return True

    def check(self, schema: Any, value: Any, path: str, ns: str | None, dotted: str) -> None:
        if isinstance(schema, str):
            if schema in self.names:
                schema = self.names[schema]
            elif ns and f"{ns}.{schema}" in self.names:
                schema = self.names[f"{ns}.{schema}"]
        if isinstance(schema, list):
            for branch in schema:
                if self.fits(branch, value, ns):
                    self.check(branch, value, path, ns, dotted)
                    return
            shown = [b if isinstance(b, str) else b.get("type") for b in schema]
            raise PayloadError(path, f"expected one of {shown}, got {_type_name(value)}")
        kind = schema.get("type") if isinstance(schema, dict) else schema
        if isinstance(kind, (dict, list)):
            self.check(kind, value, path, ns, dotted)
            return
        if isinstance(schema, dict) and kind in ("record", "enum", "fixed"):
            ns = self._register(schema, ns)
        self._check_kind(schema, str(kind), value, path, ns, dotted)

    def _check_kind(
        self, schema: Any, kind: str, value: Any, path: str, ns: str | None, dotted: str
    ) -> None:
        def fail(reason: str) -> None:
            raise PayloadError(path, reason)

        if kind == "null":
            if value is not None:
                fail(f"expected null, got {_type_name(value)}")
        elif kind == "boolean":
            if not isinstance(value, bool):
                fail(f"expected boolean, got {_type_name(value)}")
        elif kind in _INT_RANGE:
            if not isinstance(value, int) or isinstance(value, bool):
                fail(f"expected {kind}, got {_type_name(value)}")
            lo, hi = _INT_RANGE[kind]
            if not lo <= value <= hi:
                fail(f"{kind} out of range [{lo}, {hi}]")
        elif kind in ("float", "double"):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                fail(f"expected {kind}, got {_type_name(value)}")
            if isinstance(value, float) and math.isnan(value):
                fail("NaN is not allowed")
        elif kind == "string":
            if not isinstance(value, str):
                fail(f"expected string, got {_type_name(value)}")
        elif kind == "bytes":
            if not isinstance(value, (bytes, bytearray)):
                fail(f"expected bytes, got {_type_name(value)}")
        elif kind == "fixed":
            if not isinstance(value, (bytes, bytearray)) or len(value) != schema["size"]:
                fail(f"expected {schema['size']} bytes")
        elif kind == "enum":
            if value not in schema["symbols"]:
                shown = "***" if dotted in self.pii else repr(value)
                fail(f"{shown} is not one of {schema['symbols']}")
        elif kind == "array":
            if not isinstance(value, (list, tuple)):
                fail(f"expected array, got {_type_name(value)}")
            for i, item in enumerate(value):
                self.check(schema["items"], item, f"{path}[{i}]", ns, dotted)
        elif kind == "map":
            if not isinstance(value, Mapping):
                fail(f"expected map, got {_type_name(value)}")
            for k, item in value.items():
                if not isinstance(k, str):
                    fail(f"map keys must be strings, got {_type_name(k)}")
                self.check(schema["values"], item, f"{path}[{k!r}]", ns, dotted)
        elif kind == "record":
            self._check_record(schema, value, path, ns, dotted)
        else:
            fail(f"unsupported schema type {kind!r}")

    def _check_record(
        self, schema: dict[str, Any], value: Any, path: str, ns: str | None, dotted: str
    ) -> None:
        if not isinstance(value, Mapping):
            raise PayloadError(path, f"expected a record (dict), got {_type_name(value)}")
        known = {f["name"] for f in schema["fields"]}
        for k in value:
            if k not in known:
                raise PayloadError(f"{path}.{k}", f"unknown field (known: {sorted(known)})")
        for f in schema["fields"]:
            fpath = f"{path}.{f['name']}"
            fdotted = f"{dotted}.{f['name']}" if dotted else f["name"]
            if f["name"] not in value:
                if "default" in f:
                    continue
                raise PayloadError(fpath, "required field is missing")
            self.check(f["type"], value[f["name"]], fpath, ns, fdotted)


def check_payload(schema: dict[str, Any], payload: Any, pii: frozenset[str] = frozenset()) -> None:
    """Raise PayloadError naming the first field that does not fit the schema."""
    _Checker(pii).check(schema, payload, "payload", schema.get("namespace"), "")


Fits = Callable[[Any], bool]


def compile_validator(
    schema: dict[str, Any], pii: frozenset[str] = frozenset()
) -> Callable[[Any], None]:
    """check_payload for one schema, compiled once: a tree of closures answers "fits?" in a
    few microseconds; only a payload that does not fit is walked again to name the field.
    The fast path may refuse what the full check accepts (an int subclass, a Mapping that is
    not a dict), never the other way round: the full check has the last word."""
    fits = _FastCompiler().compile(schema, schema.get("namespace"))

    def validate(payload: Any) -> None:
        if not fits(payload):
            check_payload(schema, payload, pii)

    return validate


class _FastCompiler:
    def __init__(self) -> None:
        self.named: dict[str, Fits] = {}

    def _ref(self, name: str, ns: str | None) -> Fits:
        full = f"{ns}.{name}" if ns and "." not in name else name
        named = self.named

        def fits(v: Any) -> bool:  # resolved at call time: named types may be recursive
            f = named.get(full) or named.get(name)
            return f is not None and f(v)

        return fits

    def compile(self, schema: Any, ns: str | None) -> Fits:
        if isinstance(schema, list):
            branches = tuple(self.compile(b, ns) for b in schema)
            return lambda v: any(b(v) for b in branches)
        if isinstance(schema, str) and schema not in _PRIMITIVE_FITS:
            return self._ref(schema, ns)
        kind = schema.get("type") if isinstance(schema, dict) else schema
        if isinstance(kind, (dict, list)):
            return self.compile(kind, ns)
        if isinstance(schema, dict) and kind in ("record", "enum", "fixed"):
            return self._named(schema, str(kind), ns)
        if kind == "array":
            item = self.compile(schema["items"], ns)
            return lambda v: type(v) in (list, tuple) and all(item(x) for x in v)
        if kind == "map":
            value = self.compile(schema["values"], ns)
            return lambda v: (
                type(v) is dict and all(type(k) is str and value(x) for k, x in v.items())
            )
        return _PRIMITIVE_FITS.get(str(kind), _never)

    def _named(self, schema: dict[str, Any], kind: str, ns: str | None) -> Fits:
        name = schema["name"]
        ns = schema.get("namespace", ns)
        full = name if "." in name or not ns else f"{ns}.{name}"
        inner_ns = full.rsplit(".", 1)[0] if "." in full else ns
        fits: Fits
        if kind == "enum":
            symbols = frozenset(schema["symbols"])
            fits = lambda v: type(v) is str and v in symbols  # noqa: E731
        elif kind == "fixed":
            size = schema["size"]
            fits = lambda v: type(v) in (bytes, bytearray) and len(v) == size  # noqa: E731
        else:
            self.named[full] = self.named[name.rsplit(".", 1)[-1]] = _never  # until compiled
            fields = tuple(
                (f["name"], self.compile(f["type"], inner_ns), "default" in f)
                for f in schema["fields"]
            )
            known = frozenset(f[0] for f in fields)

            def fits(v: Any) -> bool:
                if type(v) is not dict or not v.keys() <= known:
                    return False
                for fname, check, has_default in fields:
                    if fname in v:
                        if not check(v[fname]):
                            return False
                    elif not has_default:
                        return False
                return True

        self.named[full] = self.named[name.rsplit(".", 1)[-1]] = fits
        return fits


def _never(v: Any) -> bool:
    return False


def _fits_int(lo: int, hi: int) -> Fits:
    return lambda v: type(v) is int and lo <= v <= hi


_PRIMITIVE_FITS: dict[str, Fits] = {
    "null": lambda v: v is None,
    "boolean": lambda v: v is True or v is False,
    "int": _fits_int(*_INT_RANGE["int"]),
    "long": _fits_int(*_INT_RANGE["long"]),
    "float": lambda v: type(v) is int or (type(v) is float and v == v),
    "double": lambda v: type(v) is int or (type(v) is float and v == v),
    "string": lambda v: type(v) is str,
    "bytes": lambda v: type(v) in (bytes, bytearray),
}
