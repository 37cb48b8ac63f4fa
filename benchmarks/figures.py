"""How a figure is written, in the bench's table and in the generated docs (no imports: the
docs generator uses it without loading the benchmarks)."""

from __future__ import annotations


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()
