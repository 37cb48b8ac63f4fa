"""Durations as written in settings and topic names: "500ms", "10s", "1m", "1h", "1d".

`format_duration` gives the canonical short name used in retry topic names
(T.retry.10s), so it must round-trip with `parse_duration`. `Seconds` and `Millis` are the
settings' duration types: a plain number in the unit the setting's name gives, or a number
with a unit, stored in the setting's unit.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema


def now_ms() -> int:
    """The wall clock in milliseconds since the epoch (the unit of every time on the wire)."""
    return int(time.time() * 1000)


_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Largest first: format_duration picks the biggest unit that divides evenly.
_FORMAT_UNITS: tuple[tuple[str, int], ...] = (
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
)
# Exponents are accepted so that format_duration's repr fallback ("1e-05s") parses.
_PATTERN = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)\s*(ms|s|m|h|d)?$")
_HINT = "use a number with ms, s, m, h or d, e.g. '10s'"


def parse_duration(text: str | int | float, *, allow_zero: bool = False) -> float:
    """Return seconds. Plain numbers (or numeric strings) are seconds.

    Negative, NaN and infinite values are always rejected; zero only with allow_zero.
    """
    if isinstance(text, bool):  # bool is an int subclass; True is never meant as 1s
        raise ValueError(f"invalid duration {text!r}: {_HINT}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    elif isinstance(text, str):
        number, unit = _split(text, _HINT)
        # Dividing by 1000 (not multiplying by 0.001) keeps "100ms" == 0.1 exactly.
        seconds = number / 1000 if unit == "ms" else number * _UNITS[unit or "s"]
    else:
        raise ValueError(f"invalid duration {text!r}: {_HINT}")
    _check(text, seconds)
    if seconds == 0 and not allow_zero:
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    return seconds


def _split(text: str, hint: str) -> tuple[float, str | None]:
    match = _PATTERN.match(text.strip().lower())
    if match is None:
        raise ValueError(f"invalid duration {text!r}: {hint}")
    number, unit = match.groups()
    return float(number), unit


def _check(text: object, amount: float) -> None:
    if not math.isfinite(amount):
        raise ValueError(f"invalid duration {text!r}: must be a finite number")
    if amount < 0:
        raise ValueError(f"invalid duration {text!r}: must not be negative")


def format_duration(seconds: float) -> str:
    """Canonical short name: 10 -> "10s", 600 -> "10m", 0.5 -> "500ms", 90 -> "90s"."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format duration {seconds!r}: must be finite and >= 0")
    millis = round(seconds * 1000)
    if millis / 1000 != seconds:
        # Not a whole number of milliseconds: repr round-trips exactly.
        return f"{seconds!r}s"
    if millis == 0:
        return "0s"
    for unit, size in _FORMAT_UNITS:
        if millis % size == 0:
            return f"{millis // size}{unit}"
    raise AssertionError("unreachable: 1 ms divides every whole number of milliseconds")


_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds"}


@dataclass(frozen=True)
class DurationUnit:
    """Marks a setting as a duration stored in `unit` ("s" or "ms"); the docs generator reads
    it. A string with a unit is converted before pydantic checks the type and the bounds, so
    `ge`/`le` apply to the stored value; plain numbers (and numeric strings, as environment
    variables give them) pass through unchanged, in the setting's own unit."""

    unit: str
    # Keep the text as written (retry tiers name their topics by it); a number becomes text.
    text: bool = False

    @property
    def unit_name(self) -> str:
        return _UNIT_NAMES[self.unit]

    def convert(self, value: Any) -> Any:
        if self.text and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return value
        hint = (
            f"use a plain number of {self.unit_name} or a number with ms, s, m, h or d, "
            f"e.g. {'500ms' if self.unit == 'ms' else '30s'!r}"
        )
        number, unit = _split(value, hint)
        if self.text:
            _check(value, number)
            return value
        if unit is None:
            return value  # the setting's own unit; pydantic parses and checks it
        # Scaled by whole factors between units so "1.5s" is 1500 ms exactly.
        millis = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[unit]
        amount = number * millis if self.unit == "ms" else (
            number / 1000 if unit == "ms" else number * millis / 1000
        )
        _check(value, amount)
        if self.unit == "ms":
            if amount != int(amount):
                raise ValueError(
                    f"invalid duration {value!r}: not a whole number of milliseconds"
                )
            return int(amount)
        return amount

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(self.convert, handler(source))


Seconds = Annotated[float, DurationUnit("s")]
Millis = Annotated[int, DurationUnit("ms")]
# A duration kept as written, e.g. a retry tier ("10s", or 10 for seconds).
DurationText = Annotated[str, DurationUnit("s", text=True)]
