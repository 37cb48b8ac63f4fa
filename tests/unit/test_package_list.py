"""The wheel's package list (pyproject.toml [tool.setuptools] packages) is kept by hand: a new
subpackage left out installs without its modules, and the installed worker dies with exit 70
(consumers/batches was missed once, caught only by the image test). Every folder with a
Python module under the four top-level folders must be listed, and nothing else."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_in_the_wheel() -> None:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    dirs = conf["package-dir"]
    found = {"jobstream"}
    for name, folder in dirs.items():
        if name == "jobstream":
            continue
        for init in {f.parent for f in (ROOT / folder).rglob("*.py")}:
            rel = init.relative_to(ROOT / folder)
            if any(part.startswith((".", "_")) or part == "tests" for part in rel.parts):
                continue
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert listed == found, (f"missing: {sorted(found - listed)}; "
                             f"not a package: {sorted(listed - found)}")
