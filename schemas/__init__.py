"""Versioned Avro job schemas, the wire header table and compatibility checks."""

from jobstream.schemas.registry import (
    DecodeError,
    PayloadError,
    SchemaError,
    SchemaRegistry,
    SchemaVersion,
    UnknownJobType,
)

__all__ = [
    "DecodeError",
    "PayloadError",
    "SchemaError",
    "SchemaRegistry",
    "SchemaVersion",
    "UnknownJobType",
]
