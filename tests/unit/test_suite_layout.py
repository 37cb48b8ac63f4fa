"""The test tree itself: pytest imports test modules by their basename (the test directories are
not packages), so two files of the same name in tests/unit, tests/integration and tests/chaos
stop the whole run at collection ("import file mismatch"): a clean clone's CI once failed that
way before running a single test."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_no_two_test_modules_share_a_basename() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        if ".venv" not in path.parts and "artifacts" not in path.parts:
            seen[path.name].append(str(path.relative_to(TESTS)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, f"rename one of each: {clashes}"
