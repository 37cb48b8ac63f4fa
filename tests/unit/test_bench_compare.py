"""benchmarks/compare.py: medians per side, the ratio, and which way is better per unit."""

from __future__ import annotations

from benchmarks.compare import direction, summarise


def _row(name: str, value: float, unit: str) -> dict:
    return {"bench": "1 overhead", "name": name, "measured": value, "unit": unit}


def test_medians_ratio_and_verdict_per_unit() -> None:
    base = [[_row("rate", 100, "jobs/s"), _row("p99", 20, "ms")],
            [_row("rate", 120, "jobs/s"), _row("p99", 30, "ms")]]
    new = [[_row("rate", 200, "jobs/s"), _row("p99", 30, "ms"), _row("fresh", 1, "ms")],
           [_row("rate", 220, "jobs/s"), _row("p99", 40, "ms")]]
    rows = {r["name"]: r for r in summarise(base, new)}
    assert rows["rate"]["base_median"] == 110 and rows["rate"]["new_median"] == 210
    assert rows["rate"]["verdict"] == "better"
    assert rows["p99"]["verdict"] == "worse"  # 35 ms against 25 ms: lower is better
    assert rows["fresh"]["base_median"] is None and rows["fresh"]["verdict"] == ""


def test_within_five_percent_is_the_same_and_idle_share_has_no_direction() -> None:
    rows = summarise([[_row("a", 100, "us/job"), _row("idle", 10, "% of run")]],
                     [[_row("a", 103, "us/job"), _row("idle", 50, "% of run")]])
    assert [r["verdict"] for r in rows] == ["same", ""]
    assert direction("jobs/s") == 1 and direction("bytes") == -1
