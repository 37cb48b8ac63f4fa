"""The console when things are wrong around it: a broker that does not answer gives error
pages naming the address (no traceback, the process keeps serving); `jobstream ui` on a taken
port or with bad settings ends in one line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import yaml

from jobstream.config.settings import load_settings
from tests.console.support import add_ui_settings, console_server, free_port_from, get
from tests.support.harness import ROOT, TEST_SCHEMAS, Stack


def _stack(tmp_path: Path, bootstrap: str) -> Stack:
    data = {"kafka": {"bootstrap_servers": bootstrap}, "schema_dirs": [str(TEST_SCHEMAS)],
            "log": {"format": "json"}}
    path = tmp_path / "jobstream.yaml"
    path.write_text(yaml.safe_dump(data))
    return Stack(load_settings(**data), path, tmp_path, "test.echo")


def test_unreachable_broker_gives_error_pages(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    stack = _stack(tmp_path, dead)
    add_ui_settings(stack)
    with console_server(stack, free_port_from(range(8418, 8419))) as url:
        for path in ("/", "/dlq/test.echo", "/audit"):
            status, body, _ = get(url + path)
            assert status == 502, (path, status)
            assert f"broker unreachable at {dead}" in body and "Traceback" not in body
        status, body, _ = get(url + "/healthz")  # still serving
        assert status == 200 and body == "ok\n"


def _ui(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobstream", "ui", *args], env=stack.env(),
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_taken_port_is_one_line(tmp_path: Path, bootstrap: str) -> None:
    stack = _stack(tmp_path, bootstrap)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 8419))
        s.listen()
        res = _ui(stack, "--port", "8419")
    assert res.returncode == 1
    assert res.stderr.strip() == "error: cannot listen on 127.0.0.1:8419: Address already in use"


def test_bad_ui_settings_are_one_line(tmp_path: Path, bootstrap: str) -> None:
    stack = _stack(tmp_path, bootstrap)
    data = yaml.safe_load(stack.config_path.read_text())
    data["ui"] = {"workers": ["worker-0:9400"]}
    stack.config_path.write_text(yaml.safe_dump(data))
    res = _ui(stack, "--port", "8419")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "ui.workers" in res.stderr and "http://" in res.stderr, res.stderr
