"""The generated parts of the documentation (benchmark and reliability tables, the README's
figures, the configuration reference) match the files they come from. Issue 27: figures were
typed into the README by hand and drifted from the results files."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
gen = runpy.run_path(str(ROOT / "scripts" / "gen_docs.py"))


def test_generated_pages_are_up_to_date() -> None:
    stale = [str(p.relative_to(ROOT)) for p in gen["stale_pages"]()]
    assert not stale, f"run python scripts/gen_docs.py: {stale} out of date"


def test_a_changed_result_makes_its_page_stale(tmp_path: Path) -> None:
    page = "x\n<!-- generated: benchmarks -->\nold figures\n<!-- end generated -->\ny\n"
    rendered = gen["render"](page)
    assert "old figures" not in rendered
    assert "| benchmark | figure |" in rendered
    assert rendered.startswith("x\n") and rendered.endswith("y\n")
    assert gen["render"](rendered) == rendered
