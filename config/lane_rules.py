"""Rules for a job type's priority lanes (`priorities`, `lane_weights`; docs/priorities.md)."""

from __future__ import annotations

import re

DEFAULT_LANE = "default"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# 8:3:1 for three lanes; for n lanes the same ratios, extended (1, 3, 8, 21, ...), highest first.
_BASE = (1, 3, 8, 21, 55, 144, 377, 987)


def default_weights(n: int) -> tuple[int, ...]:
    if n <= 1:
        return (1,)
    if n > len(_BASE):
        return tuple(range(n, 0, -1))
    return tuple(reversed(_BASE[:n]))


def check_priorities(v: tuple[str, ...]) -> tuple[str, ...]:
    if not v:
        return v
    bad = [n for n in v if not _NAME.fullmatch(n)]
    if bad:
        raise ValueError(
            f"lane names are lower-case letters, digits, '-' or '_' (at most 32), got {bad}"
        )
    if len(set(v)) != len(v):
        raise ValueError(f"each lane at most once, got {list(v)}")
    if DEFAULT_LANE not in v:
        raise ValueError(
            f"priorities must include {DEFAULT_LANE!r} (the main topic is that lane), got {list(v)}"
        )
    return v


def check_weights(priorities: tuple[str, ...], weights: tuple[int, ...] | None) -> None:
    if weights is None:
        return
    if not priorities:
        raise ValueError("lane_weights needs priorities (the lanes they weigh)")
    if len(weights) != len(priorities):
        raise ValueError(
            f"lane_weights has {len(weights)} weights for {len(priorities)} lanes "
            f"{list(priorities)}: one per lane"
        )
    if any(isinstance(w, bool) or w < 1 for w in weights):
        raise ValueError(f"lane_weights must be positive integers, got {list(weights)}")


def check_fair_by(v: str | None) -> str | None:
    if v is None or v == "key":
        return v
    if v.startswith("header:") and v[len("header:"):].strip():
        return v
    raise ValueError(f"fair_by is `key` or `header:<name>` (e.g. header:tenant), got {v!r}")
