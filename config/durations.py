"""Durations as written in settings and topic names: "500ms", "10s", "1m", "1h", "1d".

`format_duration` gives the canonical short name used in retry topic names
(T.retry.10s), so it must round-trip with `parse_duration`.
"""

from __future__ import annotations

import math
import re

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
        match = _PATTERN.match(text.strip().lower())
        if match is None:
            raise ValueError(f"invalid duration {text!r}: {_HINT}")
        number, unit = match.groups()
        # Dividing by 1000 (not multiplying by 0.001) keeps "100ms" == 0.1 exactly.
        seconds = float(number) / 1000 if unit == "ms" else float(number) * _UNITS[unit or "s"]
    else:
        raise ValueError(f"invalid duration {text!r}: {_HINT}")
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {text!r}: must be a finite number")
    if seconds < 0:
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    if seconds == 0 and not allow_zero:
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    return seconds


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
