"""Admission checks for schemas: every version must read the data of every older version, not
only of the one before it (old jobs wait in the main topic, the retry tiers and the DLQ, and a
worker reads them all with the newest version), and every field has a doc.

Each (older writer, newer reader) pair gets two checks:
- Avro's resolution rules walked over both schemas: names and aliases of records, enums and
  fixed types; field defaults and aliases; promotions; union branches; decimal scale. This one
  names the field.
- fastavro's reader, the one the worker decodes with (schemas.registry.avro_reader), on sample
  data of the older version that takes every union branch and enum symbol. What it refuses is
  refused even where the walk found nothing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import fastavro

from jobstream.schemas.registry import SchemaRegistry, SchemaVersion, avro_reader
from jobstream.schemas.samples import samples

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_NAMED = {"record", "enum", "fixed", "error"}
# reader type -> the writer types it reads (Avro's promotions)
_PROMOTIONS = {
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
    field: str  # dotted path; "" for the record itself or the version set
    reason: str

    def __str__(self) -> str:
        at = f"field {self.field!r}: " if self.field else ""
        return f"{self.job_type} {self.where}: {at}{self.reason}"


def _kind(s: Any) -> str:
    if isinstance(s, list):
        return "union"
    if isinstance(s, dict):
        t = s["type"]
        return _kind(t) if isinstance(t, (dict, list)) else str(t)
    return str(s)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _names_match(r: dict[str, Any], w: dict[str, Any]) -> bool:
    """fastavro's rule (and Avro's): same unqualified name, or the writer's name, qualified or
    not, among the reader's aliases."""
    aliases = r.get("aliases", [])
    short = _short(w["name"])
    return _short(r["name"]) == short or w["name"] in aliases or short in aliases


def _deref(s: Any, named: dict[str, Any]) -> Any:
    """The definition behind a name, or behind a {"type": ...} wrapper."""
    while True:
        if isinstance(s, str) and s in named:
            s = named[s]
        elif isinstance(s, dict) and (
            isinstance(s["type"], (dict, list)) or s["type"] in named
        ):
            s = s["type"]
        else:
            return s


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Walk:
    """Resolves a reader schema against a writer schema, collecting (field, reason)."""

    def __init__(self, writer: SchemaVersion, reader: SchemaVersion) -> None:
        self.wv, self.rv = f"v{writer.version}", f"v{reader.version}"
        self.wnamed: dict[str, Any] = {}
        self.rnamed: dict[str, Any] = {}
        self.writer = fastavro.parse_schema(writer.raw, self.wnamed, _write_hint=False)
        self.reader = fastavro.parse_schema(reader.raw, self.rnamed, _write_hint=False)
        self.seen: set[tuple[int, int]] = set()
        self.problems: list[tuple[str, str]] = []

    def run(self) -> list[tuple[str, str]]:
        self.resolve(self.reader, self.writer, "")
        return self.problems

    def _deref(self, r: Any, w: Any) -> tuple[Any, Any]:
        return _deref(r, self.rnamed), _deref(w, self.wnamed)

    def matches(self, r: Any, w: Any) -> bool:
        """The shallow test fastavro picks a reader union's branch with."""
        r, w = self._deref(r, w)
        rk, wk = _kind(r), _kind(w)
        if rk in _PRIMITIVES or wk in _PRIMITIVES:
            return wk in _PROMOTIONS.get(rk, {rk})
        if rk != wk:
            return False
        if rk in _NAMED:
            return _names_match(r, w) and (rk != "fixed" or r["size"] == w["size"])
        if rk == "array":
            return self.matches(r["items"], w["items"])
        return self.matches(r["values"], w["values"])  # a map

    def resolve(self, r: Any, w: Any, path: str) -> None:
        r, w = self._deref(r, w)
        if isinstance(w, list):  # every branch the older version may have written
            for branch in w:
                self.resolve(r, branch, path)
            return
        if isinstance(r, list):
            branch = next((b for b in r if self.matches(b, w)), None)
            if branch is None:
                self.fail(path, f"{self.wv} writes {_describe(w)}, which no branch of "
                                f"{self.rv}'s union {[_describe(b) for b in r]} reads")
            else:
                self.resolve(branch, w, path)
            return
        rk, wk = _kind(r), _kind(w)
        if rk in _PRIMITIVES or wk in _PRIMITIVES or rk != wk:
            if wk not in _PROMOTIONS.get(rk, {rk}):
                self.fail(path, f"type changed from {_describe(w)} in {self.wv} to "
                                f"{_describe(r)} in {self.rv}")
            else:
                self._decimal(r, w, path)
            return
        if rk in _NAMED and not _names_match(r, w):
            old, new = _short(w["name"]), _short(r["name"])
            self.fail(path, f"{rk} {old} of {self.wv} is renamed {new} in {self.rv} without "
                            f"an alias (add \"aliases\": [\"{old}\"] to {new})")
            return
        if (id(r), id(w)) in self.seen:  # a recursive type, resolved once
            return
        self.seen.add((id(r), id(w)))
        if rk in ("record", "error"):
            self._record(r, w, path)
        elif rk == "enum":
            missing = [s for s in w["symbols"] if s not in r["symbols"]]
            if missing and "default" not in r:
                self.fail(path, f"enum {_short(r['name'])} of {self.rv} lacks symbols {missing} of "
                                f"{self.wv} and has no default")
        elif rk == "fixed":
            if r["size"] != w["size"]:
                self.fail(path, f"fixed {_short(r['name'])} size changed from {w['size']} in "
                                f"{self.wv} to {r['size']} in {self.rv}")
            else:
                self._decimal(r, w, path)
        elif rk == "array":
            self.resolve(r["items"], w["items"], path + "[]")
        elif rk == "map":
            self.resolve(r["values"], w["values"], path + "{}")

    def _record(self, r: dict[str, Any], w: dict[str, Any], path: str) -> None:
        wfields = {f["name"]: f for f in w["fields"]}
        for f in r["fields"]:
            fpath = _join(path, f["name"])
            wf = wfields.get(f["name"]) or next(
                (wfields[a] for a in f.get("aliases", []) if a in wfields), None
            )
            if wf is None:
                if "default" not in f:
                    self.fail(fpath, f"not in {self.wv}'s data and no default in {self.rv}")
                continue
            self.resolve(f["type"], wf["type"], fpath)

    def _decimal(self, r: Any, w: Any, path: str) -> None:
        # Avro's rules match decimals only with equal scale and precision. fastavro reads old
        # bytes with the writer's scale, but Avro readers in other languages refuse them.
        rd, wd = (s if isinstance(s, dict) and s.get("logicalType") == "decimal" else None
                  for s in (r, w))
        if rd is None or wd is None:
            return
        for key in ("scale", "precision"):
            if rd.get(key, 0) != wd.get(key, 0):
                self.fail(path, f"decimal {key} changed from {wd.get(key, 0)} in {self.wv} to "
                                f"{rd.get(key, 0)} in {self.rv}")

    def fail(self, path: str, reason: str) -> None:
        self.problems.append((path, reason))


def _describe(s: Any) -> str:
    if isinstance(s, dict):
        t = s["type"]
        return f"{t} {_short(s['name'])}" if t in _NAMED else str(t)
    return str(s)


def check_pair(older: SchemaVersion, newer: SchemaVersion) -> list[Problem]:
    """Why `newer` cannot read data written with `older` (empty when it can)."""
    where = f"v{older.version} -> v{newer.version}"
    found = [
        Problem(newer.job_type, where, field, reason)
        for field, reason in _Walk(older, newer).run()
    ]
    if found:
        return found
    read = avro_reader(older.raw, newer.raw)
    for data in samples(older.raw):
        try:
            read(io.BytesIO(data))
        except Exception as e:  # fastavro raises several types
            return [Problem(newer.job_type, where, "", f"fastavro cannot read v{older.version} "
                                                        f"data as v{newer.version}: {e}")]
    return []


def _undocumented(schema: Any, path: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            for f in schema["fields"]:
                fpath = _join(path, f["name"])
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


def check_registry(registry: SchemaRegistry, job_types: list[str] | None = None) -> list[Problem]:
    """Every problem of the schema set: each version against each older one, gaps in the
    version numbers, fields without a doc."""
    problems: list[Problem] = []
    for jt in job_types or registry.job_types():
        versions = registry.versions(jt)
        for i, newer in enumerate(versions):
            for older in versions[:i]:
                problems += check_pair(older, newer)
            if i and newer.version != versions[i - 1].version + 1:
                where = f"v{versions[i - 1].version} -> v{newer.version}"
                problems.append(Problem(jt, where, "", "gap in version numbers"))
        for sv in versions:
            for field in _undocumented(sv.raw):
                problems.append(Problem(jt, f"v{sv.version}", field, "field has no doc"))
    return problems
