"""`jobstream schemas check`'s compatibility rules (schemas/compat.py), without a broker: every
version against every older one, by Avro's resolution rules and by fastavro's own reader."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from jobstream.schemas import compat
from jobstream.schemas.compat import check_registry
from jobstream.schemas.registry import SchemaRegistry, avro_reader
from jobstream.schemas.samples import samples

JT = "shop.refund"


def rec(*fields: dict[str, Any], name: str = "Refund", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "shop", "doc": "d",
            "fields": [{"doc": "d", **f} for f in fields], **extra}


A = {"name": "a", "type": "string"}


def problems(tmp_path: Path, *versions: dict[str, Any]) -> list[str]:
    d = tmp_path / JT
    d.mkdir(parents=True, exist_ok=True)
    for n, raw in enumerate(versions, 1):
        (d / f"v{n}.avsc").write_text(json.dumps(raw))
    return [str(p) for p in check_registry(SchemaRegistry.from_dirs([tmp_path]), [JT])]


def test_renaming_the_record_fails_naming_versions_and_names(tmp_path: Path) -> None:
    """Issue 26 item 3: renaming the record (Refund -> Refund2) passed `schemas check`; then
    every old job became a `decode` dead letter (fastavro matches records by name). Now it
    fails, naming both versions, both names and the fix."""
    found = problems(tmp_path, rec(A), rec(A, name="Refund2"))
    assert found == [
        'shop.refund v1 -> v2: record Refund of v1 is renamed Refund2 in v2 without an alias '
        '(add "aliases": ["Refund"] to Refund2)'
    ]
    assert problems(tmp_path, rec(A), rec(A, name="Refund2", aliases=["Refund"])) == []


def test_a_default_dropped_later_fails_against_the_first_version(tmp_path: Path) -> None:
    """Issue 26 item 3: v1 {a}; v2 adds b with a default; v3 drops the default. Each step
    passed (only neighbours were compared), yet v3 cannot read v1's jobs still waiting in the
    topics. Every version is now checked against every older one."""
    b = {"name": "b", "type": "long"}
    found = problems(tmp_path, rec(A), rec(A, {**b, "default": 0}), rec(A, b))
    assert found == ["shop.refund v1 -> v3: field 'b': not in v1's data and no default in v3"]


@pytest.mark.parametrize(
    ("older", "newer", "expected"),
    [
        (rec(A, {"name": "n", "type": rec(A, name="Inner")}),
         rec(A, {"name": "n", "type": rec(A, name="Other")}),
         "field 'n': record Inner of v1 is renamed Other in v2 without an alias"),
        (rec({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}}),
         rec({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X"]}}),
         "field 'e': enum E of v2 lacks symbols ['Y'] of v1 and has no default"),
        (rec({"name": "u", "type": ["null", "string", "long"]}),
         rec({"name": "u", "type": ["null", "string"]}),
         "field 'u': v1 writes long, which no branch of v2's union ['null', 'string'] reads"),
        (rec({"name": "m", "type": {"type": "map", "values": "long"}}),
         rec({"name": "m", "type": {"type": "map", "values": "int"}}),
         "field 'm{}': type changed from long in v1 to int in v2"),
        (rec({"name": "f", "type": {"type": "fixed", "name": "F", "size": 4}}),
         rec({"name": "f", "type": {"type": "fixed", "name": "F", "size": 8}}),
         "field 'f': fixed F size changed from 4 in v1 to 8 in v2"),
        (rec({"name": "p", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9,
                                    "scale": 2}}),
         rec({"name": "p", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9,
                                    "scale": 3}}),
         "field 'p': decimal scale changed from 2 in v1 to 3 in v2"),
    ],
)
def test_each_resolution_rule_names_the_field(
    tmp_path: Path, older: dict[str, Any], newer: dict[str, Any], expected: str
) -> None:
    (found,) = problems(tmp_path, older, newer)
    assert found.startswith(f"shop.refund v1 -> v2: {expected}"), found


# Changes Avro resolves: the check must pass them, and fastavro must read v1 data as v2.
COMPATIBLE = [
    (rec(A), rec(A, {"name": "b", "type": "long", "default": 0})),  # field added with a default
    (rec(A, {"name": "b", "type": "long"}), rec(A)),  # field removed
    (rec({"name": "old", "type": "string"}),
     rec({"name": "new", "type": "string", "aliases": ["old"]})),  # field renamed with an alias
    (rec({"name": "n", "type": "int"}), rec({"name": "n", "type": "double"})),  # promotion
    (rec({"name": "u", "type": "string"}), rec({"name": "u", "type": ["null", "string"]})),
    (rec({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}}),
     rec({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Z"],
                                "default": "X"}})),
    (rec({"name": "next", "type": ["null", "Refund"]}),  # a recursive record, both sides
     rec({"name": "next", "type": ["null", "Refund"]}, {"name": "c", "type": "int",
                                                       "default": 1})),
    (rec({"name": "r", "type": ["null", rec(A, name="One"), rec(A, name="Two")]}),
     rec({"name": "r", "type": ["null", rec(A, name="Two"), rec(A, name="One")]})),
]


@pytest.mark.parametrize(("older", "newer"), COMPATIBLE)
def test_compatible_changes_pass_and_fastavro_agrees(
    tmp_path: Path, older: dict[str, Any], newer: dict[str, Any]
) -> None:
    assert problems(tmp_path, older, newer) == []
    read = avro_reader(older, newer)
    data = samples(older)
    assert data, "samples were made"
    for raw in data:
        buf = io.BytesIO(raw)
        read(buf)
        assert buf.tell() == len(raw)


def test_samples_take_every_union_branch_and_enum_symbol() -> None:
    schema = rec({"name": "u", "type": ["null", "string", "long", rec(A, name="R")]},
                 {"name": "e", "type": {"type": "enum", "name": "E", "symbols": list("ABCDEF")}})
    parsed = fastavro.parse_schema(schema)
    got = [fastavro.schemaless_reader(io.BytesIO(b), parsed, None) for b in samples(schema)]
    assert {type(g["u"]).__name__ for g in got} == {"NoneType", "str", "int", "dict"}
    assert {g["e"] for g in got} == set("ABCDEF")


def test_what_only_fastavro_refuses_is_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second line: with the walk blind to names, fastavro's reader on v1's sample data
    still refuses the rename."""
    monkeypatch.setattr(compat, "_names_match", lambda r, w: True)
    (found,) = problems(tmp_path, rec(A), rec(A, name="Refund2"))
    assert found.startswith("shop.refund v1 -> v2: fastavro cannot read v1 data as v2: "), found


def test_the_shipped_schemas_pass() -> None:
    root = Path(__file__).resolve().parents[2]
    dirs = [p for p in (root / "examples" / "schemas", root / "tests" / "schemas",
                        root / "benchmarks" / "schemas" / "avro") if p.is_dir()]
    assert [str(p) for p in check_registry(SchemaRegistry.from_dirs(dirs))] == []
