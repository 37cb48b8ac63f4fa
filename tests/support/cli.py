"""The CLI's command tree for tests: walk it, and parse a command line the way `jobstream` would
(resolving it to the command it calls; nothing runs)."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer

from jobstream.consumers.cli import app

# typer ships its own copy of click, so commands and groups are told apart by their attributes.
Command = Any
ROOT_COMMAND: Command = typer.main.get_command(app)
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def is_group(cmd: Command) -> bool:
    return isinstance(getattr(cmd, "commands", None), dict)


def walk(
    cmd: Command = ROOT_COMMAND, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], Command]]:
    found = [(path, cmd)]
    if is_group(cmd):
        for name, sub in sorted(cmd.commands.items()):
            if not sub.hidden:
                found += walk(sub, (*path, name))
    return found


def parses(line: str) -> None:
    """Fail the test unless `line` (a `jobstream ...` call) names a command and its arguments
    parse."""
    words = shlex.split(line)
    while words and _ENV.match(words[0]):
        words.pop(0)
    assert words and words[0] == "jobstream", line
    cmd = ROOT_COMMAND
    args = words[1:]
    while is_group(cmd):
        if not args or args[0] in ("--help", "--version"):
            return  # the group itself, or its help
        assert args and args[0] in cmd.commands, f"{line!r} names no command"
        cmd = cmd.commands[args.pop(0)]
    if not args or "--help" in args:
        return  # the command named in prose, or its help
    try:
        cmd.make_context(words[-1], list(args))
    except Exception as e:  # a usage error of typer's click: the line is wrong
        pytest.fail(f"{line!r} does not parse: {e}")
