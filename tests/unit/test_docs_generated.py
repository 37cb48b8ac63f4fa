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
    assert not stale, f"run .venv/bin/python scripts/gen_docs.py: {stale} out of date"


def test_a_changed_result_makes_its_page_stale(tmp_path: Path) -> None:
    page = "x\n<!-- generated: benchmarks -->\nold figures\n<!-- end generated -->\ny\n"
    rendered = gen["render"](page)
    assert "old figures" not in rendered
    assert "| benchmark | figure |" in rendered
    assert rendered.startswith("x\n") and rendered.endswith("y\n")
    assert gen["render"](rendered) == rendered


def test_every_setting_has_a_description() -> None:
    """Issue 27: the configuration reference is generated from the settings models, so a
    setting without a description would be a row that tells the user nothing (the hand-written
    table before it had drifted: half the settings were missing). Every setting and section of
    the Settings tree needs Field(description=...)."""
    missing = gen["settings_without_description"]()
    assert not missing, f"settings without a description (Field(description=...)): {missing}"


def test_the_reference_lists_every_setting_with_its_environment_variable() -> None:
    """Issue 27: one row per setting, sections included, with the JOBSTREAM_ variable, the
    type and the default; durations show their unit and a default written as a duration."""
    text = gen["configuration_reference"]()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    names = [row.split("`")[1] for row in rows]
    assert len(names) == len(set(names))
    for name in ("kafka.bootstrap_servers", "worker.dlq_guard.window_s", "log.level",
                 "jobs.<type>.circuit_breaker.cooldown_s", "broker.heap", "schema_dirs"):
        assert name in names
    (ttl,) = [row for row in rows if row.startswith("| `worker.ledger_ttl_s`")]
    assert "`JOBSTREAM_WORKER__LEDGER_TTL_S`" in ttl and "duration" in ttl and "`7d`" in ttl
    (commit,) = [row for row in rows if row.startswith("| `worker.commit_interval_ms`")]
    assert "in ms" in commit and "`500ms`" in commit and "<= 1m" in commit
    assert "### `jobs.<type>.circuit_breaker`" in text
    assert str(Path.home()) not in text  # the broker's default dirs are shown as ~/...
