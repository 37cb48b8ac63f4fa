"""Issue 27: every `jobstream ...` line in the README and on the docs site, in code blocks and in
inline code, names a command that exists, with options it takes. A renamed command or option
used to leave pages that fail in a reader's terminal; now they fail here. The lines of
docs/getting-started.md also run for real (tests/integration/test_getting_started.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.cli import parses
from tests.support.harness import ROOT

BLOCK = re.compile(r"```(\w*)[^\n]*\n(.*?)```", re.S)
_ENV = r"(?:[A-Z_][A-Z0-9_]*=\S*\s+)*"
LINE = re.compile(rf"^\s*(?:\$\s+)?({_ENV}jobstream(?:\s.*)?)$")
INLINE = re.compile(r"`(jobstream [^`]+)`")


def _normalise(line: str) -> str:
    """A usage line as a call: `[--group G]` is an option given, `T ...` one value, `a|b`
    the first of the commands named."""
    line = re.split(r"\s{2,}#|\s+\|\s|\s+&&\s", line)[0]
    line = line.rstrip("& ").replace("[", " ").replace("]", " ").replace("...", " ")
    line = re.sub(r"\b([\w-]+)(?:\|[\w-]+)+", r"\1", line)  # `show|wait`: the first one
    return " ".join(line.split())


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _lines() -> list[tuple[str, str]]:
    found = []
    for page in _pages():
        for lang, body in BLOCK.findall(page.read_text()):
            if lang not in ("", "sh", "bash", "console", "shell"):
                continue
            for raw in body.splitlines():
                if lang == "console" and not raw.lstrip().startswith("$"):
                    continue  # a command's output, not a command
                m = LINE.match(raw)
                if m:
                    found.append((page.relative_to(ROOT).as_posix(), _normalise(m.group(1))))
        prose = BLOCK.sub("", page.read_text())
        for span in INLINE.findall(prose):
            found.append((page.relative_to(ROOT).as_posix(), _normalise(span)))
    return found


LINES = _lines()


def test_the_pages_hold_commands_to_check() -> None:
    pages = {page for page, _ in LINES}
    assert {"docs/getting-started.md", "docs/operations.md"} <= pages, pages
    assert len(LINES) >= 20, LINES


@pytest.mark.parametrize(("page", "line"), LINES, ids=[f"{p}: {c}" for p, c in LINES])
def test_every_documented_command_parses(page: str, line: str) -> None:
    parses(line)


def test_a_wrong_option_fails_the_check() -> None:
    with pytest.raises(pytest.fail.Exception):
        parses("jobstream dlq list orders.confirmation --no-such-option")
    with pytest.raises(AssertionError):
        parses("jobstream dlq frobnicate")
