"""Strict Avro decoding (SchemaRegistry.decode): bytes no Avro writer produces, which fastavro
reads anyway, are decode errors naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobstream.schemas.registry import DecodeError, SchemaRegistry

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = SchemaRegistry.from_dirs([ROOT / "tests" / "schemas", ROOT / "examples" / "schemas"])
ORDERS = "orders.confirmation"
ORDER = {"order_id": "o-1", "email": "a@example.com", "total_cents": 1299}



def test_a_negative_union_index_is_refused() -> None:
    """Issue 26 item 28: fastavro reads a union index of -1 as the last branch, so a value no
    Avro writer produces decoded as a valid payload. It is a decode error now."""
    payload = {**ORDER, "locale": "de-DE"}
    version, good = REGISTRY.encode(ORDERS, payload)
    assert REGISTRY.decode(ORDERS, version, good)["locale"] == "de-DE"
    union_at = good.rindex(b"\x02" + bytes([len("de-DE") * 2]))  # branch 1 (zigzag 2)
    bad = good[:union_at] + b"\x01" + good[union_at + 1 :]  # zigzag 1 = index -1
    with pytest.raises(DecodeError, match="locale: union index -1"):
        REGISTRY.decode(ORDERS, version, bad)


def test_the_confluent_framing_bytes_alone_are_not_a_payload() -> None:
    """Issue 26 item 28: the 5 bytes of Confluent Schema Registry framing (magic byte 0, schema
    id 1) decoded as a media.thumbnail with empty fields (its enum read index -1). No job type
    accepts them now, and the error says what the bytes look like."""
    framing = b"\x00" + (1).to_bytes(4, "big")
    for jt in REGISTRY.job_types():
        for sv in REGISTRY.versions(jt):
            with pytest.raises(DecodeError) as caught:
                REGISTRY.decode(jt, sv.version, framing)
            assert "Confluent" in str(caught.value), (jt, sv.version, str(caught.value))


STRICT: dict[str, Any] = {
    "type": "record",
    "name": "Strict",
    "namespace": "t.strict",
    "fields": [
        {"name": "i", "type": "int"},
        {"name": "b", "type": "boolean"},
        {"name": "e", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "BLUE"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": ["null", "long"]}},
        {"name": "fx", "type": {"type": "fixed", "name": "Two", "size": 2}},
        {"name": "d", "type": "double"},
        {"name": "next", "type": ["null", "Strict"], "default": None},
        {"name": "nulls", "type": {"type": "array", "items": "null"}, "default": []},
    ],
}
GOOD = {"i": 5, "b": True, "e": "BLUE", "tags": ["x"], "attrs": {"k": 3}, "fx": b"ab", "d": 1.5}
DECODED = {**GOOD, "next": None, "nulls": []}


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> SchemaRegistry:
    root = tmp_path_factory.mktemp("schemas")
    (root / "t.strict").mkdir()
    (root / "t.strict" / "v1.avsc").write_text(json.dumps(STRICT))
    return SchemaRegistry.from_dirs([root])


def _zigzag(n: int) -> bytes:
    z = (n << 1) ^ (n >> 127)
    out = bytearray()
    while z >= 0x80:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# After i, b and e: empty tags and attrs, fx, a zero double, next null, no nulls.
TAIL = b"\x00\x00ab" + b"\x00" * 8 + b"\x00\x00"
I5 = _zigzag(5)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (_zigzag(2**31) + b"\x01\x02" + TAIL, "int 2147483648 out of range"),
        (I5 + b"\x02\x02" + TAIL, "boolean byte 2"),
        (I5 + b"\x01\x01" + TAIL, "enum index -1"),
        (I5 + b"\x01\x04" + TAIL, "enum index 2"),
        (I5 + b"\x01\x02\x00\x02\x02k\x01\x06\x00ab" + TAIL[4:], "union index -1"),
        (I5 + b"\x01\x02\x02\x01x\x00" + TAIL[1:], "length -1"),
        (I5 + b"\x01\x02" + TAIL + b"\x00", "1 trailing byte"),
        (I5 + b"\x01\x02" + TAIL[:-1] + _zigzag(2**40) + b"\x00", "block of 1099511627776"),
    ],
    ids=["int", "boolean", "enum-1", "enum2", "union-1", "length-1", "trailing", "huge-block"],
)
def test_strict_decode_refuses_what_no_avro_writer_writes(
    strict: SchemaRegistry, value: bytes, match: str
) -> None:
    """Issue 26 item 28: fastavro reads an int past 2**31, a boolean byte 2, an enum or union
    index of -1 (as the last symbol or branch), a negative length, and a block count of 2**40
    (a list of 2**40 nulls) without a word; the worker then ran a payload no writer wrote. Each
    is a decode error naming the field now, and a value must be consumed exactly."""
    _, good = strict.encode("t.strict", GOOD)
    assert good == I5 + b"\x01\x02" + good[3:] and strict.decode("t.strict", 1, good) == DECODED
    assert strict.decode("t.strict", 1, I5 + b"\x01\x02" + TAIL)["i"] == 5  # TAIL is well made
    with pytest.raises(DecodeError, match=match):
        strict.decode("t.strict", 1, value)


def test_strict_decode_reads_nested_and_recursive_values(strict: SchemaRegistry) -> None:
    """Issue 26 item 28: the strict pass follows named (and recursive) types and every block
    form a writer may use (a negative count with its byte size)."""
    inner = {**GOOD, "i": -(2**31), "e": "RED", "tags": [], "attrs": {"n": None}, "nulls": [None]}
    _, data = strict.encode("t.strict", {**GOOD, "next": inner})
    assert strict.decode("t.strict", 1, data) == {
        **DECODED, "next": {**inner, "next": None}
    }
    # tags written as one block of count -1 with its byte size (2), then the end marker
    head = I5 + b"\x01\x02"
    assert data.startswith(head + b"\x02\x02x\x00")
    blocked = head + b"\x01\x04\x02x\x00" + data[len(head) + 4 :]
    assert strict.decode("t.strict", 1, blocked) == strict.decode("t.strict", 1, data)
