"""Issue 26 item 8: `make test` set JOBSTREAM_BROKER__DATA_DIR=~/.cache/jobstream/test-broker
and scripts/with-broker.sh deleted that directory whenever nothing answered on the port; on a
shared home that can be another broker's data. Now a test run that starts its own broker gives
it a fresh temporary directory, removed at the end, and never deletes a directory it was given.

`jobstream` is replaced by a stub (the script runs it through $JOBSTREAM) that says nothing
answers and records what it was asked; a real broker start is not what is under test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.harness import ROOT

_STUB = """#!/usr/bin/env bash
echo "$1 $2 ${JOBSTREAM_BROKER__DATA_DIR:-<unset>}" >> "$STUB_LOG"
case "$1 $2" in
  "broker status") exit 1 ;;
  "broker start")
    if [ -e "$JOBSTREAM_BROKER__DATA_DIR/broker.pid" ]; then echo "not fresh" >> "$STUB_LOG"; fi
    mkdir -p "$JOBSTREAM_BROKER__DATA_DIR" && echo 1 > "$JOBSTREAM_BROKER__DATA_DIR/broker.pid" ;;
esac
"""

# The command under the script: records the data dir it was given, which must hold the broker.
_COMMAND = (
    'echo "$JOBSTREAM_BROKER__DATA_DIR" > "$SEEN"; test -f "$JOBSTREAM_BROKER__DATA_DIR/broker.pid"'
)


def _run(tmp_path: Path, command: str = _COMMAND, **env: str) -> tuple[int, list[str], str]:
    stub = tmp_path / "jobstream"
    stub.write_text(_STUB)
    stub.chmod(0o755)
    log, seen = tmp_path / "stub.log", tmp_path / "seen"
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("JOBSTREAM_")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    proc = subprocess.run(
        [
            str(ROOT / "scripts" / "with-broker.sh"),
            "sh",
            "-c",
            command,
        ],
        env={
            **base,
            "JOBSTREAM": str(stub),
            "STUB_LOG": str(log),
            "SEEN": str(seen),
            "TMPDIR": str(tmp_path / "tmp"),
            "HOME": str(tmp_path / "home"),
            "JOBSTREAM_FRESH_BROKER": "1",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, log.read_text().splitlines(), seen.read_text().strip()


def test_a_test_run_gets_a_fresh_temporary_data_dir_removed_at_the_end(tmp_path: Path) -> None:
    rc, calls, seen = _run(tmp_path)
    assert rc == 0, calls
    assert Path(seen).parent == tmp_path / "tmp"  # under $TMPDIR, not under $HOME
    assert calls == [
        "broker status <unset>",
        f"broker start {seen}",
        f"broker stop {seen}",
    ]
    assert not Path(seen).exists()
    rc, _, second = _run(tmp_path)
    assert rc == 0 and second != seen  # one directory per run


def test_the_commands_exit_code_is_kept_and_the_dir_still_removed(tmp_path: Path) -> None:
    rc, calls, seen = _run(tmp_path, command=_COMMAND + "; exit 7")
    assert rc == 7
    assert calls[-1] == f"broker stop {seen}"
    assert not Path(seen).exists()


def test_a_data_dir_the_user_named_is_used_and_never_deleted(tmp_path: Path) -> None:
    mine = tmp_path / "home" / ".cache" / "jobstream" / "test-broker"
    mine.mkdir(parents=True)
    (mine / "someone-elses-data").write_text("keep")
    rc, calls, seen = _run(tmp_path, JOBSTREAM_BROKER__DATA_DIR=str(mine))
    assert rc == 0, calls
    assert seen == str(mine)
    assert (mine / "someone-elses-data").read_text() == "keep"


def test_make_test_names_no_data_dir_of_its_own() -> None:
    recipe = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout
    assert "with-broker.sh" in recipe
    assert "JOBSTREAM_BROKER__DATA_DIR" not in recipe
    assert ".cache/jobstream/test-broker" not in recipe
