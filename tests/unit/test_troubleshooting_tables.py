"""Issue 27: docs/troubleshooting.md tells an operator what each exit code, readiness reason
and error category means. It was typed in, and had drifted: two readiness reasons and the
/healthz reasons were missing, and the `crashed` row had lost its "retried?" cell. Now the
code has one table of each (ExitCode in consumers/errors.py, the reason templates in
consumers/health.py, Category in consumers/runtime/types.py), and these tests fail when the page
lacks one the code has, or lists one the code does not."""

from __future__ import annotations

import re

from jobstream.consumers import health
from jobstream.consumers.cli.worker import worker
from jobstream.consumers.errors import ExitCode
from jobstream.consumers.runtime import retry
from jobstream.consumers.runtime.types import Category
from tests.support.harness import ROOT

PAGE = ROOT / "docs" / "troubleshooting.md"


def _table(heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table under the `## ` heading that starts so."""
    text = PAGE.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)
    matches = [s for s in sections if s.startswith(heading)]
    assert len(matches) == 1, f"one section {heading!r} in {PAGE}, found {len(matches)}"
    lines = [ln for ln in matches[0].splitlines() if ln.startswith("|")]
    assert len(lines) > 2, f"no table under {heading!r}"
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines[2:]]
    width = len(lines[0].strip().strip("|").split("|"))
    for row in rows:
        assert len(row) == width, f"{heading!r}: row {row} has {len(row)} cells, not {width}"
    return rows


def _ticked(cell: str) -> str:
    m = re.fullmatch(r"`([^`]+)`", cell)
    assert m, f"{cell!r} is not one `quoted` value"
    return m.group(1)


def _shown(template: str) -> str:
    """A reason template as the page writes it: each `{field...}` as `<field>`."""
    return re.sub(r"\{(\w+)[^}]*\}", r"<\1>", template)


def test_every_exit_code_and_only_those() -> None:
    documented = [int(row[0]) for row in _table("Exit codes of `jobstream worker`")]
    assert sorted(documented) == sorted(int(c) for c in ExitCode)
    assert len(set(documented)) == len(documented), "a code listed twice"


def test_the_worker_help_lists_the_same_exit_codes() -> None:
    doc = worker.__doc__ or ""
    listed = [int(m) for m in re.findall(r"^\s*(\d+)\s{2,}", doc, re.MULTILINE)]
    assert sorted(listed) == sorted(int(c) for c in ExitCode), doc


def test_every_readiness_reason_and_only_those() -> None:
    documented = [_ticked(row[0]) for row in _table("Readiness (`/readyz`) reasons")]
    assert sorted(documented) == sorted(_shown(r) for r in health.READINESS_REASONS)


def test_every_liveness_reason_and_only_those() -> None:
    documented = [_ticked(row[0]) for row in _table("Liveness (`/healthz`) reasons")]
    assert sorted(documented) == sorted(_shown(r) for r in health.HEALTH_REASONS)


def test_the_reasons_a_health_object_gives_are_in_the_tables() -> None:
    """The templates are what Health really says: a stalled and a watched Health, filled in."""
    h = health.Health(stall_after_s=0.0, ready_stall_s=0.0)
    h.last_poll -= 1
    reasons = [h.healthy()[1], h.readiness()[1]]
    h = health.Health()
    h.watch(lambda _s: health.ASYNC_LOOP_STOPPED)
    reasons += [h.healthy()[1], h.readiness()[1]]
    h = health.Health()
    reasons.append(h.readiness()[1])
    pattern = {t: re.compile(re.escape(_shown(t)).replace(re.escape("<seconds>"), r"[0-9.]+"))
               for t in (*health.READINESS_REASONS, *health.HEALTH_REASONS)}
    for reason in reasons:
        assert any(p.fullmatch(reason) for p in pattern.values()), reason


def test_every_error_category_and_only_those_with_whether_it_is_retried() -> None:
    rows = _table("Error categories")
    documented = {_ticked(row[0]): row[2] for row in rows}
    assert sorted(documented) == sorted(c.value for c in Category)
    assert len(rows) == len(documented), "a category listed twice"
    for category, retried in documented.items():
        at_once = Category(category) in retry._DLQ_AT_ONCE
        assert retried.startswith("no" if at_once else "yes"), (category, retried)
