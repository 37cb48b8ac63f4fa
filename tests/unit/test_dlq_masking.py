"""How `dlq show` and `dlq export` print a dead letter's payload: PII masked by walking the
schema (every Avro type and container), every value JSON-safe (bytes as base64)."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest

from jobstream.consumers.ops.dlq import DeadLetter
from jobstream.schemas import wire
from jobstream.schemas.registry import SchemaRegistry

JT = "test.kitchen"
PERSON: dict[str, Any] = {"type": "record", "name": "Person", "fields": [
    {"name": "email", "type": "string", "pii": True},
    {"name": "city", "type": "string"},
]}
ALICE = {"email": "alice@example.com", "city": "Oslo"}
ALICE_SHOWN = {"email": "***", "city": "Oslo"}


def shown(tmp_path: Path, fields: list[dict[str, Any]], payload: dict[str, Any],
          unmask: bool = False) -> Any:
    """The payload of a dead letter of a one-version job type with these fields, as shown."""
    schema = {"type": "record", "name": "Kitchen", "namespace": "t.k", "fields": fields}
    (tmp_path / JT).mkdir()
    (tmp_path / JT / "v1.avsc").write_text(json.dumps(schema))
    reg = SchemaRegistry.from_dirs([tmp_path])
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), payload)
    dl = DeadLetter.build("t.dlq", 0, 0, None, None, buf.getvalue(), wire.encode_headers(
        {wire.JOB_TYPE: JT, wire.SCHEMA_VERSION: 1}))
    out = dl.payload(reg, unmask)
    assert isinstance(out, dict), out
    json.dumps(out, allow_nan=False)  # what export writes: strict JSON, never a TypeError
    return out


# (Avro type, a value, how it is shown when not PII)
TYPES: list[tuple[Any, Any, Any]] = [
    ("null", None, None),
    ("boolean", True, True),
    ("int", -7, -7),
    ("long", 2**40, 2**40),
    ("float", 1.5, 1.5),
    ("double", float("nan"), "NaN"),  # JSON has no NaN: shown as a string
    ("double", float("-inf"), "-Infinity"),
    ("bytes", b"\x00\xffhi", "AP9oaQ=="),  # base64
    ("string", "hello", "hello"),
    ({"type": "enum", "name": "Color", "symbols": ["RED", "BLUE"]}, "BLUE", "BLUE"),
    ({"type": "fixed", "name": "Four", "size": 4}, b"abcd", "YWJjZA=="),
    ({"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2},
     Decimal("1234.56"), "1234.56"),
    ({"type": "string", "logicalType": "uuid"}, uuid.UUID(int=1),
     "00000000-0000-0000-0000-000000000001"),
    ({"type": "int", "logicalType": "date"}, date(2024, 5, 1), "2024-05-01"),
    ({"type": "int", "logicalType": "time-millis"}, time(12, 0, 1, 5000), "12:00:01.005000"),
    ({"type": "long", "logicalType": "time-micros"}, time(12, 0, 1, 7), "12:00:01.000007"),
    ({"type": "long", "logicalType": "timestamp-millis"},
     datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC), "2024-05-01T12:00:00.123000+00:00"),
    ({"type": "long", "logicalType": "timestamp-micros"},
     datetime(2024, 5, 1, 12, 0, 0, 7, tzinfo=UTC), "2024-05-01T12:00:00.000007+00:00"),
    ({"type": "long", "logicalType": "local-timestamp-millis"},
     datetime(2024, 5, 1, 12, 0, 0, 123000), "2024-05-01T12:00:00.123000"),
    (PERSON, ALICE, ALICE_SHOWN),
    ({"type": "array", "items": "long"}, [1, 2], [1, 2]),
    ({"type": "map", "values": "bytes"}, {"k": b"\x01"}, {"k": "AQ=="}),
    (["null", "string"], "x", "x"),
]


@pytest.mark.parametrize(("avro_type", "value", "plain"), TYPES,
                         ids=lambda v: json.dumps(v, default=str)[:40])
def test_every_avro_type_masked_when_pii_and_json_safe_when_not(
        tmp_path: Path, avro_type: Any, value: Any, plain: Any) -> None:
    """Issue 26 items 9 and 14: a field of any Avro type marked "pii" is shown as ***, and an
    unmarked one is printed as JSON (before, bytes, fixed, decimals and times made `dlq
    export` fail with "Object of type bytes is not JSON serializable")."""
    # a named type (record, enum, fixed) is defined once; the second field uses its name
    again = avro_type["name"] if isinstance(avro_type, dict) and "name" in avro_type else avro_type
    out = shown(tmp_path, [{"name": "secret", "type": avro_type, "pii": True},
                           {"name": "plain", "type": again}],
                {"secret": value, "plain": value})
    assert out == {"secret": "***", "plain": plain}


# (field type holding Person records somewhere inside, a value, how it is shown)
CONTAINERS: list[tuple[str, Any, Any, Any]] = [
    ("record", PERSON, ALICE, ALICE_SHOWN),
    ("array", {"type": "array", "items": PERSON}, [ALICE, ALICE], [ALICE_SHOWN, ALICE_SHOWN]),
    ("map", {"type": "map", "values": PERSON}, {"a": ALICE}, {"a": ALICE_SHOWN}),
    ("union", ["null", PERSON], ALICE, ALICE_SHOWN),
    ("union-null", ["null", PERSON], None, None),
    ("array-of-arrays", {"type": "array", "items": {"type": "array", "items": PERSON}},
     [[ALICE]], [[ALICE_SHOWN]]),
    ("map-of-arrays", {"type": "map", "values": {"type": "array", "items": PERSON}},
     {"k": [ALICE]}, {"k": [ALICE_SHOWN]}),
    ("array-of-maps", {"type": "array", "items": {"type": "map", "values": PERSON}},
     [{"k": ALICE}], [{"k": ALICE_SHOWN}]),
    ("union-in-map", {"type": "map", "values": ["null", "string", PERSON]},
     {"a": ALICE, "b": "plain", "c": None}, {"a": ALICE_SHOWN, "b": "plain", "c": None}),
    ("record-in-record", {"type": "record", "name": "Order", "fields": [
        {"name": "buyer", "type": PERSON}, {"name": "n", "type": "int"}]},
     {"buyer": ALICE, "n": 1}, {"buyer": ALICE_SHOWN, "n": 1}),
]


@pytest.mark.parametrize(("name", "avro_type", "value", "expected"), CONTAINERS,
                         ids=[c[0] for c in CONTAINERS])
def test_pii_inside_every_container_is_masked(tmp_path: Path, name: str, avro_type: Any,
                                              value: Any, expected: Any) -> None:
    """Issue 26 item 9: PII inside map values, arrays of arrays, unions and nested records was
    printed in clear under "(PII masked)" (the mask matched dotted field paths, which a map
    key or a nested list breaks). Masking walks the schema with the value now."""
    out = shown(tmp_path, [{"name": "x", "type": avro_type}], {"x": value})
    assert out == {"x": expected}
    assert "alice@example.com" not in json.dumps(out)
    (tmp_path / "u").mkdir()
    assert shown(tmp_path / "u", [{"name": "x", "type": avro_type}], {"x": value},
                 unmask=True) == {"x": value}


def test_named_type_references_and_recursive_types_are_masked(tmp_path: Path) -> None:
    """Issue 26 item 9: a record type used a second time by name (and a recursive one) kept
    its PII in clear, because only inline definitions were looked at."""
    node = {"type": "record", "name": "Node", "fields": [
        {"name": "who", "type": "Person"}, {"name": "next", "type": ["null", "Node"]}]}
    out = shown(tmp_path, [
        {"name": "owner", "type": PERSON},
        {"name": "others", "type": {"type": "array", "items": "Person"}},
        {"name": "by_ns", "type": {"type": "map", "values": "t.k.Person"}},
        {"name": "chain", "type": node},
    ], {"owner": ALICE, "others": [ALICE], "by_ns": {"x": ALICE},
        "chain": {"who": ALICE, "next": {"who": ALICE, "next": None}}})
    assert out == {"owner": ALICE_SHOWN, "others": [ALICE_SHOWN], "by_ns": {"x": ALICE_SHOWN},
                   "chain": {"who": ALICE_SHOWN, "next": {"who": ALICE_SHOWN, "next": None}}}


def test_union_of_records_masks_the_branch_the_value_is(tmp_path: Path) -> None:
    """Issue 26 item 9: in a union of two record types, each with other PII fields, the value's
    own branch decides; a value that fits both is masked by both (never less)."""
    card = {"type": "record", "name": "Card", "fields": [
        {"name": "number", "type": "string", "pii": True}, {"name": "city", "type": "string"}]}
    out = shown(tmp_path, [{"name": "x", "type": {"type": "array", "items": [PERSON, card]}}],
                {"x": [ALICE, {"number": "4111", "city": "Rome"}]})
    assert out == {"x": [ALICE_SHOWN, {"number": "***", "city": "Rome"}]}


def test_a_pii_container_is_masked_whole(tmp_path: Path) -> None:
    """Issue 26 item 9: "pii" on a map, array or record field hides the whole value."""
    out = shown(tmp_path, [
        {"name": "m", "type": {"type": "map", "values": "string"}, "pii": True},
        {"name": "a", "type": {"type": "array", "items": "string"}, "pii": True},
        {"name": "r", "type": PERSON, "pii": True},
    ], {"m": {"k": "v"}, "a": ["v"], "r": ALICE})
    assert out == {"m": "***", "a": "***", "r": "***"}
