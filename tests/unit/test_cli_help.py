"""Issue 27: `jobstream --version` did not exist, and no command's `--help` showed how to call
it. Now every command and command group, the root included, ends its help in an "Example:"
line, and the example parses as a call of the command it names (so a renamed option fails here,
not in a reader's terminal). The walk finds commands added later by itself."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from jobstream.consumers.cli import app
from tests.support.cli import Command, parses, walk
from tests.support.harness import ROOT

COMMANDS = walk()


def test_the_walk_finds_every_command_group_and_command() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    for expected in ("", "worker", "publish", "dlq", "dlq replay", "broker start", "schemas check"):
        assert expected in names, expected
    assert len(names) >= 19  # at the time of writing


@pytest.mark.parametrize(
    ("path", "cmd"), COMMANDS, ids=[" ".join(p) or "jobstream" for p, _ in COMMANDS]
)
def test_help_exits_0_and_ends_in_an_example_that_parses(
    path: tuple[str, ...], cmd: Command
) -> None:
    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    assert any(line.strip().startswith("Example") for line in res.output.splitlines()), res.output
    assert cmd.epilog and cmd.epilog.startswith("Example: "), cmd.epilog
    parses(cmd.epilog.removeprefix("Example: "))


def test_version_prints_the_distribution_version() -> None:
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    assert res.output == f"jobstream {version('jobstream')}\n"
    pyproject = (ROOT / "pyproject.toml").read_text()
    m = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert m is not None and version("jobstream") == m.group(1)


def test_version_through_the_real_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jobstream", "--version"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"jobstream {version('jobstream')}"
