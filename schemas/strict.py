"""The strict pass over Avro binary that fastavro does not make, run before it decodes a job.

fastavro reads a union or enum index of -1 as the last branch or symbol, an int past 2**31, a
boolean byte 2 as True, and a block count of 2**40 as a list it then tries to build. No Avro
writer produces those, and a job decoded from them must not run. The pass walks the bytes once
against the writer schema without building values, and says where the first wrong byte is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (data, position) -> position after the value; raises StrictError, or IndexError at the end.
Scan = Callable[[bytes, int], int]

_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
# A block may hold more items than bytes are left only if its items take no bytes (null, an
# empty record); past this many it is a memory bomb, not data.
_ZERO_WIDTH_ITEMS = 1 << 16


class StrictError(ValueError):
    """Bytes no Avro writer produces for this schema."""


def _varint(d: bytes, p: int) -> tuple[int, int]:
    """The zigzag varint at p and the position after it."""
    b = d[p]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), p + 1
    n, shift = b & 0x7F, 7
    while True:
        p += 1
        b = d[p]
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return (n >> 1) ^ -(n & 1), p + 1
        shift += 7
        if shift > 63:
            raise StrictError(f"a varint longer than 10 bytes at byte {p}")


def compile_scan(schema: dict[str, Any]) -> Callable[[bytes], int]:
    """A checker for values written with `schema`: returns how many bytes the value takes."""
    scan = _Compiler().compile(schema, schema.get("namespace"), "payload")

    def check(data: bytes) -> int:
        try:
            return scan(data, 0)
        except IndexError:
            raise StrictError(f"the value ends early ({len(data)} bytes)") from None

    return check


class _Compiler:
    def __init__(self) -> None:
        self.named: dict[str, Scan] = {}

    def compile(self, schema: Any, ns: str | None, path: str) -> Scan:
        if isinstance(schema, list):
            return self._union([self.compile(b, ns, path) for b in schema], path)
        kind = schema.get("type") if isinstance(schema, dict) else schema
        if isinstance(kind, (dict, list)):
            return self.compile(kind, ns, path)
        if isinstance(schema, dict) and kind in ("record", "error", "enum", "fixed"):
            return self._named(schema, str(kind), ns, path)
        if kind == "array":
            return self._blocks(path, self.compile(schema["items"], ns, path + "[]"), None)
        if kind == "map":
            key = self.compile("string", ns, path + "{}")
            return self._blocks(path, self.compile(schema["values"], ns, path + "{}"), key)
        primitive = _primitive(str(kind), path)
        return primitive if primitive is not None else self._ref(str(kind), ns)

    def _ref(self, name: str, ns: str | None) -> Scan:
        full = f"{ns}.{name}" if ns and "." not in name else name
        named = self.named

        def scan(d: bytes, p: int) -> int:  # looked up when used: named types may recurse
            return (named.get(full) or named[name])(d, p)

        return scan

    def _named(self, schema: dict[str, Any], kind: str, ns: str | None, path: str) -> Scan:
        name = schema["name"]
        ns = schema.get("namespace", ns)
        full = name if "." in name or not ns else f"{ns}.{name}"
        scan: Scan
        if kind == "enum":
            scan = _index(len(schema["symbols"]), "enum", path)
        elif kind == "fixed":
            scan = _sized(int(schema["size"]), f"fixed({schema['size']})", path)
        else:
            inner = full.rsplit(".", 1)[0] if "." in full else ns
            self.named[full] = self.named[name.rsplit(".", 1)[-1]] = _unset
            fields = tuple(
                self.compile(f["type"], inner, f"{path}.{f['name']}") for f in schema["fields"]
            )

            def scan(d: bytes, p: int) -> int:
                for field in fields:
                    p = field(d, p)
                return p

        self.named[full] = self.named[name.rsplit(".", 1)[-1]] = scan
        return scan

    @staticmethod
    def _union(branches: list[Scan], path: str) -> Scan:
        n = len(branches)

        def scan(d: bytes, p: int) -> int:
            i, p = _varint(d, p)
            if not 0 <= i < n:
                raise StrictError(f"{path}: union index {i} outside 0..{n - 1}")
            return branches[i](d, p)

        return scan

    @staticmethod
    def _blocks(path: str, item: Scan, key: Scan | None) -> Scan:
        def scan(d: bytes, p: int) -> int:
            while True:
                count, p = _varint(d, p)
                if count == 0:
                    return p
                if count < 0:  # a block with its byte size after the count
                    count = -count
                    size, p = _varint(d, p)
                    if size < 0:
                        raise StrictError(f"{path}: block size {size}")
                if count > len(d) - p + _ZERO_WIDTH_ITEMS:
                    raise StrictError(
                        f"{path}: a block of {count} items with {len(d) - p} bytes left"
                    )
                for _ in range(count):
                    if key is not None:
                        p = key(d, p)
                    p = item(d, p)

        return scan


def _unset(d: bytes, p: int) -> int:
    raise AssertionError("a named type was used before it was compiled")


def _index(n: int, what: str, path: str) -> Scan:
    def scan(d: bytes, p: int) -> int:
        i, p = _varint(d, p)
        if not 0 <= i < n:
            raise StrictError(f"{path}: {what} index {i} outside 0..{n - 1}")
        return p

    return scan


def _sized(size: int, what: str, path: str) -> Scan:
    def scan(d: bytes, p: int) -> int:
        if p + size > len(d):
            raise StrictError(f"{path}: {what} needs {size} bytes, {len(d) - p} left")
        return p + size

    return scan


def _primitive(kind: str, path: str) -> Scan | None:
    if kind == "null":
        return lambda d, p: p
    if kind == "boolean":

        def boolean(d: bytes, p: int) -> int:
            if d[p] > 1:
                raise StrictError(f"{path}: boolean byte {d[p]}")
            return p + 1

        return boolean
    if kind in _RANGE:
        lo, hi = _RANGE[kind]

        def integer(d: bytes, p: int) -> int:
            if d[p] < 0x80:  # one byte, always in range (the common case, inlined)
                return p + 1
            v, p = _varint(d, p)
            if not lo <= v <= hi:
                raise StrictError(f"{path}: {kind} {v} out of range")
            return p

        return integer
    if kind == "float":
        return _sized(4, "float", path)
    if kind == "double":
        return _sized(8, "double", path)
    if kind in ("string", "bytes"):

        def sized(d: bytes, p: int) -> int:
            n = d[p]
            if n < 0x80:  # a length below 64 (the common case, inlined)
                n, p = (n >> 1) ^ -(n & 1), p + 1
            else:
                n, p = _varint(d, p)
            if n < 0 or p + n > len(d):
                raise StrictError(f"{path}: {kind} of length {n} with {len(d) - p} bytes left")
            return p + n

        return sized
    return None
