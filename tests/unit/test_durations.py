import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobstream.config.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("1m", 60.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1.5s", 1.5),
        (" 10 S ", 10.0),
        ("30", 30.0),
        (30, 30.0),
        (2.5, 2.5),
        ("100ms", 0.1),
    ],
)
def test_parse(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10x", "", "s", "ten seconds", "1h30m", "nan", "inf"])
def test_parse_rejects_garbage_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match=f"invalid duration '{text}'"):
        parse_duration(text)


@pytest.mark.parametrize("value", ["-1s", -5, math.nan, math.inf, True])
def test_parse_rejects_negative_and_non_finite(value: str | float) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


def test_zero_only_when_allowed() -> None:
    with pytest.raises(ValueError, match="greater than zero"):
        parse_duration("0s")
    assert parse_duration("0s", allow_zero=True) == 0.0
    assert parse_duration(0, allow_zero=True) == 0.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (10, "10s"),
        (60, "1m"),
        (600, "10m"),
        (3600, "1h"),
        (0.5, "500ms"),
        (90, "90s"),
        (86400, "1d"),
        (1.5, "1500ms"),
        (0, "0s"),
        (7200, "2h"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_duration(-1)


@given(st.integers(min_value=1, max_value=10**12))
def test_round_trip_whole_milliseconds(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_round_trip_any_float(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
