"""Regenerates the parts of the documentation that are data: the benchmark and reliability
tables from their results files (and, later, the configuration reference from the settings
models). Each generated part sits between two markers in its page:

    <!-- generated: NAME -->
    ...
    <!-- end generated -->

`python scripts/gen_docs.py` rewrites them; `--check` exits 1 when a page is out of date
(tests/unit/test_docs_generated.py runs it in CI)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.figures import fmt  # noqa: E402  (after the path: run as a script)

DOCS = ROOT / "docs"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def benchmarks_table() -> str:
    data = json.loads((ROOT / "benchmarks" / "results" / "latest.json").read_text())
    meta = data.get("meta", {})
    out = [
        f"Sizes: {meta.get('sizes', '?')}; {meta.get('cpus', '?')} CPUs; librdkafka "
        f"{meta.get('librdkafka', '?')}; {meta.get('seconds', 0):.0f} s in all.",
        "",
        "| benchmark | figure | measured | baseline | ratio | target | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        passed = r.get("passed")
        result = "" if passed is None else ("pass" if passed else "**miss**")
        base = ""
        if r.get("baseline") is not None:
            base = f"{fmt(r['baseline'], r.get('unit', ''))} ({r.get('baseline_name', '')})"
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else ""
        out.append(
            f"| {_cell(r['bench'])} | {_cell(r['name'])} | "
            f"{_cell(fmt(r.get('measured'), r.get('unit', '')))} | {_cell(base)} | {ratio} | "
            f"{_cell(r.get('target', ''))} | {result} |"
        )
    return "\n".join(out)


def _faults(faults: dict[str, Any]) -> str:
    parts = []
    for name, value in faults.items():
        label = name.replace("_", " ")
        if isinstance(value, dict):
            inner = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in value.items())
            value = f"{sum(value.values()):,} ({inner})"
        elif isinstance(value, list):
            value = ", ".join(fmt(float(v)) for v in value)
        elif isinstance(value, str):
            continue  # a trace of the run (e.g. the fleet sizes), not a figure
        parts.append(f"{label}: {value}")
    return "; ".join(parts)


def reliability_table() -> str:
    data = json.loads((ROOT / "tests" / "chaos" / "results" / "latest.json").read_text())
    out = [
        "| scenario | jobs | faults | lost | runs after a recorded completion | "
        "dead-lettered (twice) | elapsed | passed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in data["scenarios"]:
        out.append(
            f"| {s['scenario'].replace('_', ' ')} | {s['jobs']:,} | "
            f"{_cell(_faults(s.get('faults', {})))} | {s['lost']} | "
            f"{s['runs_after_completion']} | {s['dead_lettered']:,} ({s.get('dlq_repeats', 0)}) | "
            f"{s['elapsed_s']:.0f} s | {'yes' if s.get('passed') else '**no**'} |"
        )
    return "\n".join(out)


def readme_figures() -> str:
    """The README's short table: each benchmark with a target, its figure and result."""
    data = json.loads((ROOT / "benchmarks" / "results" / "latest.json").read_text())
    out = ["| benchmark | figure | measured | target | result |", "|---|---|---|---|---|"]
    for r in data["rows"]:
        if not r.get("target"):
            continue
        measured = fmt(r.get("measured"), r.get("unit", ""))
        if r.get("ratio") is not None:
            measured += f" ({r['ratio']:.2f} x {r.get('baseline_name', 'baseline')})"
        result = "pass" if r.get("passed") else "miss"
        out.append(
            f"| {_cell(r['bench'])} | {_cell(r['name'])} | {_cell(measured)} | "
            f"{_cell(r['target'])} | {result} |"
        )
    return "\n".join(out)


GENERATORS: dict[str, Callable[[], str]] = {
    "benchmarks": benchmarks_table,
    "readme-figures": readme_figures,
    "reliability": reliability_table,
}

_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S
)


def render(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        gen = GENERATORS[m.group("name")]
        return f"{m.group(1)}{gen()}\n{m.group(4)}"

    return _BLOCK.sub(sub, text)


def stale_pages() -> list[Path]:
    """Pages whose generated parts differ from what the generators make now."""
    pages = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]
    return [p for p in pages if render(p.read_text()) != p.read_text()]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    stale = stale_pages()
    if "--check" in args:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is out of date: run python scripts/gen_docs.py")
        return 1 if stale else 0
    for p in stale:
        p.write_text(render(p.read_text()))
        print(f"regenerated {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
