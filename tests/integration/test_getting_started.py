"""The newcomer path (issue 27): docs/getting-started.md, followed as written. The page's files
(the schema and the job module) are written from its code blocks, and its shell commands are
run from its `sh` blocks in order, against the test broker; only the set-up lines (venv, broker
start) are left to the suite. A page that drifts from what jobstream does fails here."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.harness import ROOT

PAGE = ROOT / "docs" / "getting-started.md"
BLOCK = re.compile(r'```(\w+)(?: title="([^"]+)")?\n(.*?)```', re.S)
SET_UP = ("make venv", ". .venv/bin/activate", "jobstream broker start")


def _blocks() -> list[tuple[str, str | None, str]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in BLOCK.finditer(PAGE.read_text())]


def _commands() -> list[str]:
    out = []
    for lang, _title, body in _blocks():
        if lang != "sh":
            continue
        for line in body.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith(SET_UP):
                out.append(line)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _delete_topics(bootstrap: str, prefix: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if names:
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # gone already, or never made
                fut.result()


def test_getting_started_as_written(tmp_path: Path, bootstrap: str) -> None:
    for _lang, title, body in _blocks():
        if title:
            path = tmp_path / title
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
    (tmp_path / "myservice" / "__init__.py").touch()
    commands = _commands()
    assert commands[:2] == [
        "export JOBSTREAM_SCHEMA_DIRS=myservice/schemas",
        "jobstream topics apply",
    ], commands

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JOBSTREAM_") and k != "PYTHONPATH"}
    env.update(
        JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
        JOBSTREAM_WORKER__HTTP_PORT=str(_free_port()),
        JOBSTREAM_WORKER__GROUP_ID=f"getting-started-{os.getpid()}",
        JOBSTREAM_LOG__FORMAT="json",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    _delete_topics(bootstrap, "jobs.greetings.send")
    worker: subprocess.Popen[bytes] | None = None
    log = tmp_path / "worker.log"
    try:
        for cmd in commands:
            if cmd.startswith("export "):
                name, _, value = cmd.removeprefix("export ").partition("=")
                env[name] = value
                continue
            argv = shlex.split(cmd.removesuffix("&").strip())
            if cmd.endswith("&"):
                with open(log, "wb") as out:
                    worker = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=out,
                                              stderr=subprocess.STDOUT)
                continue
            res = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                                 timeout=120)
            assert res.returncode == 0, f"{cmd}: {res.stdout}{res.stderr}"
        assert worker is not None, "the page starts a worker in the background"

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and '"event": "succeeded"' not in log.read_text():
            assert worker.poll() is None, log.read_text()
            time.sleep(0.5)
        text = log.read_text()
        assert '"event": "succeeded"' in text and '"job_type": "greetings.send"' in text, text

        # The page's bad e-mail ends in the DLQ, listed masked.
        bad = ["jobstream", "publish", "greetings.send", "--json",
               '{"name": "Bob", "email": "nope"}']
        assert subprocess.run(bad, cwd=tmp_path, env=env, timeout=60).returncode == 0
        deadline = time.monotonic() + 90
        listed = ""
        while time.monotonic() < deadline:
            listed = subprocess.run(["jobstream", "dlq", "list", "greetings.send"], cwd=tmp_path,
                                    env=env, capture_output=True, text=True, timeout=60).stdout
            if "PermanentError" in listed:
                break
            time.sleep(1)
        assert "PermanentError" in listed, listed
        assert "nope" not in listed
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=60)
        _delete_topics(bootstrap, "jobs.greetings.send")
