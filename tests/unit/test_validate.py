"""The compiled payload validator and the direct Avro writer against the reference paths:
the validator must refuse exactly what check_payload refuses, with the same message, and the
writer must produce the bytes fastavro's public schemaless_writer produces."""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path
from typing import Any

import fastavro
import pytest

from jobstream.schemas.registry import avro_reader, avro_writer
from jobstream.schemas.validate import PayloadError, check_payload, compile_validator

ROOT = Path(__file__).resolve().parents[2]
RICH: dict[str, Any] = {
    "type": "record",
    "name": "Rich",
    "namespace": "t.rich",
    "fields": [
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "d", "type": "double"},
        {"name": "f", "type": "float"},
        {"name": "b", "type": "boolean"},
        {"name": "s", "type": "string"},
        {"name": "raw", "type": "bytes"},
        {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
        {"name": "e", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "BLUE"]}},
        {"name": "opt", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
        {
            "name": "child",
            "type": {
                "type": "record",
                "name": "Child",
                "fields": [
                    {"name": "colour", "type": "Colour"},
                    {"name": "next", "type": ["null", "Child"], "default": None},
                ],
            },
        },
        {"name": "either", "type": ["int", "string", "Four"]},
    ],
}


def _schemas() -> list[dict[str, Any]]:
    found = [RICH]
    for path in sorted(ROOT.glob("*/**/v*.avsc")):
        if ".venv" not in path.parts:
            found.append(json.loads(path.read_text()))
    return found


def _named(schema: dict[str, Any], names: dict[str, Any]) -> None:
    if isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            names[schema["name"]] = schema
        for f in schema.get("fields", []):
            _named(f["type"], names)
        for key in ("items", "values", "type"):
            if isinstance(schema.get(key), (dict, list)):
                _named(schema[key], names)
    elif isinstance(schema, list):
        for b in schema:
            _named(b, names)


def _value(schema: Any, names: dict[str, Any], rnd: random.Random, depth: int = 0) -> Any:
    if isinstance(schema, list):
        branches = [b for b in schema if depth < 3 or b == "null"] or schema
        return _value(rnd.choice(branches), names, rnd, depth + 1)
    if isinstance(schema, str) and schema in names:
        schema = names[schema]
    kind = schema["type"] if isinstance(schema, dict) else schema
    if isinstance(kind, (dict, list)):
        return _value(kind, names, rnd, depth)
    simple = {
        "null": lambda: None,
        "boolean": lambda: rnd.random() < 0.5,
        "int": lambda: rnd.randint(-(2**31), 2**31 - 1),
        "long": lambda: rnd.randint(-(2**63), 2**63 - 1),
        "double": lambda: rnd.uniform(-1e9, 1e9),
        "float": lambda: float(rnd.randint(-1000, 1000)),
        "string": lambda: "".join(rnd.choice("abcé€") for _ in range(rnd.randint(0, 8))),
        "bytes": lambda: rnd.randbytes(rnd.randint(0, 8)),
    }
    if kind in simple:
        return simple[kind]()
    if kind == "fixed":
        return rnd.randbytes(schema["size"])
    if kind == "enum":
        return rnd.choice(schema["symbols"])
    if kind == "array":
        return [_value(schema["items"], names, rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    if kind == "map":
        return {f"k{i}": _value(schema["values"], names, rnd, depth + 1) for i in range(2)}
    assert kind == "record", kind
    out = {}
    for f in schema["fields"]:
        if "default" in f and rnd.random() < 0.3:
            continue
        out[f["name"]] = _value(f["type"], names, rnd, depth + 1)
    return out


BAD_VALUES = [None, True, 1, 2**63, -(2**31) - 1, 1.5, math.nan, "x", b"x", [1], {"a": 1}, "BLUE"]


def _mutate(payload: Any, rnd: random.Random) -> Any:
    if not isinstance(payload, dict) or not payload:
        return rnd.choice(BAD_VALUES)
    out = dict(payload)
    key = rnd.choice(sorted(out))
    roll = rnd.random()
    if roll < 0.15:
        del out[key]
    elif roll < 0.25:
        out["unknown_" + key] = 1
    elif roll < 0.5 and isinstance(out[key], dict):
        out[key] = _mutate(out[key], rnd)
    elif roll < 0.6 and isinstance(out[key], list) and out[key]:
        out[key] = [*out[key][:-1], rnd.choice(BAD_VALUES)]
    else:
        out[key] = rnd.choice(BAD_VALUES)
    return out


def _outcome(fn: Any, payload: Any) -> str | None:
    try:
        fn(payload)
    except PayloadError as e:
        return str(e)
    return None


@pytest.mark.parametrize("schema", _schemas(), ids=lambda s: s["name"])
def test_compiled_validator_agrees_with_the_full_check(schema: dict[str, Any]) -> None:
    names: dict[str, Any] = {}
    _named(schema, names)
    fast = compile_validator(schema, frozenset({"s"}))
    rnd = random.Random(7)
    refused = 0
    for _ in range(600):
        payload = _value(schema, names, rnd)
        if rnd.random() < 0.6:
            payload = _mutate(payload, rnd)
        expected = _outcome(lambda p: check_payload(schema, p, frozenset({"s"})), payload)
        assert _outcome(fast, payload) == expected, payload
        refused += expected is not None
    assert 100 < refused < 600  # both sides of the check were exercised


def _payloads(schema: dict[str, Any], seed: int, count: int = 300) -> list[Any]:
    """Valid payloads of every shape the schema allows, from a fixed seed."""
    names: dict[str, Any] = {}
    _named(schema, names)
    rnd = random.Random(seed)
    return [_value(schema, names, rnd) for _ in range(count)]


@pytest.mark.parametrize("schema", _schemas(), ids=lambda s: s["name"])
def test_direct_writer_writes_what_fastavro_writes(schema: dict[str, Any]) -> None:
    write = avro_writer(schema)
    parsed = fastavro.parse_schema(schema)
    for payload in _payloads(schema, 11):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, payload)
        assert write(payload) == buf.getvalue()


def test_direct_writer_refuses_bad_data_like_fastavro() -> None:
    write = avro_writer(RICH)
    with pytest.raises((TypeError, ValueError)):
        write({"i": "not an int"})


@pytest.mark.parametrize("schema", _schemas(), ids=lambda s: s["name"])
def test_direct_reader_reads_what_fastavro_reads(schema: dict[str, Any]) -> None:
    read = avro_reader(schema)
    parsed = fastavro.parse_schema(schema)
    rnd = random.Random(13)
    for payload in _payloads(schema, 13):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, payload)
        data = buf.getvalue()
        expected = fastavro.schemaless_reader(io.BytesIO(data), parsed, None)
        got = io.BytesIO(data)
        assert read(got) == expected
        assert got.tell() == len(data)
        cut = io.BytesIO(data[: rnd.randrange(len(data))]) if len(data) > 1 else None
        if cut is not None:
            outcome = []
            for fn in (read, lambda b: fastavro.schemaless_reader(b, parsed, None)):
                b = io.BytesIO(cut.getvalue())
                try:
                    outcome.append(("ok", fn(b), b.tell()))
                except Exception:
                    outcome.append(("error",))
            assert outcome[0] == outcome[1]


def test_direct_reader_resolves_an_older_writer_into_the_newest_reader() -> None:
    v1, v2 = (
        json.loads((ROOT / "examples/schemas/orders.confirmation" / f"v{n}.avsc").read_text())
        for n in (1, 2)
    )
    buf = io.BytesIO()
    payload = {"order_id": "o-1", "email": "a@b.c", "total_cents": 1299}
    fastavro.schemaless_writer(buf, fastavro.parse_schema(v1), payload)
    read = avro_reader(v1, v2)
    assert read(io.BytesIO(buf.getvalue())) == {**payload, "currency": "EUR", "locale": None}
