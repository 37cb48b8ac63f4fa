"""The worker image's install, replayed without Docker, then run against the real broker.

The Dockerfile's own instructions are interpreted here: its builder stage's RUN lines (venv,
`pip install -r requirements.lock`, `pip install --no-deps .`, compileall) run verbatim in a
fresh directory, with the image paths (/opt/venv, /src, /app) mapped under tmp_path; the
context is the repository filtered by .dockerignore; the runtime stage's ENV, WORKDIR, COPY
and ENTRYPOINT are applied. Then the installed `jobstream` (the entrypoint) applies topics,
publishes a job and runs `worker --app examples.demo_jobs`, which must handle it, be ready and
count it on /metrics. A missing runtime dependency in the lock, a schema file left out of the
package data, or a .dockerignore that drops something the build needs fails here.

Only RUN lines that need root (apt-get, user management) are skipped; any other instruction
this interpreter does not know fails the test, so a Dockerfile change is never silently ignored.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_dockerfile import instructions

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
ROOT_ONLY_RUN = re.compile(r"^\s*(apt-get|groupadd|useradd)\b")


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins, `!` re-includes; a matched directory
    excludes what is under it."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pat in patterns:
        negate = pat.startswith("!")
        rx = _pattern_regex(pat.lstrip("!").strip("/"))
        if any(rx.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def build_context(dest: Path) -> Path:
    """The repository as the Docker daemon would receive it."""
    patterns = dockerignore_patterns()
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel_dir = Path(dirpath).relative_to(ROOT).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if not ignored(rel_dir + d, patterns)]
        for name in filenames:
            rel = rel_dir + name
            if not ignored(rel, patterns):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(dirpath) / name, target)
    return dest


class ImageReplay:
    """Applies Dockerfile instructions to a directory tree standing in for the image."""

    def __init__(self, tmp: Path) -> None:
        self.context = build_context(tmp / "context")
        self.image = tmp / "image"  # "/" of the image: the working directory before WORKDIR
        self.image.mkdir()
        # Container path -> host path. Every WORKDIR and the venv must be mapped here.
        self.paths = {p: self.image / p.lstrip("/") for p in ("/opt/venv", "/src", "/app")}
        shim = tmp / "shim"  # `python` in the base image: a plain CPython 3.11
        shim.mkdir()
        (shim / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
        self.env: dict[str, str] = {
            "PATH": f"{shim}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp / "home"),
            "LANG": "C.UTF-8",
        }
        # pip settings of this machine (certificate bundle, timeouts), never its Python paths.
        self.env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
        self.workdir = self.image
        self.shell = ["/bin/sh", "-c"]
        self.entrypoint: list[str] = []
        self.cmd: list[str] = []
        self.skipped: list[str] = []

    def host(self, text: str) -> str:
        for container, host in self.paths.items():
            text = re.sub(rf"(?<![\w/.]){re.escape(container)}(?=$|[/\s:;&|])", str(host), text)
        return text

    def stage(self, ops: list[tuple[str, str]]) -> None:
        for op, args in ops:
            getattr(self, f"op_{op.lower()}", self.unknown)(op, args)

    def unknown(self, op: str, args: str) -> None:
        pytest.fail(f"Dockerfile instruction {op} {args!r} is not replayed by this test")

    def op_from(self, op: str, args: str) -> None:
        self.workdir = self.image

    def op_arg(self, op: str, args: str) -> None:
        pass  # only the base image tag, which is not replayed

    def op_label(self, op: str, args: str) -> None:
        pass

    def op_expose(self, op: str, args: str) -> None:
        pass

    def op_user(self, op: str, args: str) -> None:
        pass  # the uid is checked in test_dockerfile.py; files here belong to the test user

    def op_shell(self, op: str, args: str) -> None:
        self.shell = json.loads(args)

    def op_env(self, op: str, args: str) -> None:
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            value = re.sub(r"\$\{?(\w+)\}?", lambda m: self.env.get(m.group(1), ""), value)
            self.env[key] = self.host(value)

    def op_workdir(self, op: str, args: str) -> None:
        assert args in self.paths, f"WORKDIR {args} has no host mapping in this test"
        self.workdir = self.paths[args]
        self.workdir.mkdir(parents=True, exist_ok=True)

    def op_copy(self, op: str, args: str) -> None:
        words = args.split()
        if any(w.startswith("--from=") for w in words):
            return  # the builder's venv is already at its runtime path
        *sources, dest = words
        target = self.workdir / dest if not dest.startswith("/") else Path(self.host(dest))
        for src in sources:
            path = self.context / src
            assert path.exists(), f"COPY {src}: not in the build context (.dockerignore?)"
            if path.is_dir():  # like Docker: the directory's contents go into dest
                shutil.copytree(path, target, dirs_exist_ok=True)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)

    def op_run(self, op: str, args: str) -> None:
        if ROOT_ONLY_RUN.match(args):
            self.skipped.append(args)
            return
        proc = subprocess.run(
            [*self.shell, self.host(args)],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"RUN {args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    def op_entrypoint(self, op: str, args: str) -> None:
        self.entrypoint = json.loads(args)

    def op_cmd(self, op: str, args: str) -> None:
        self.cmd = json.loads(args)


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for op, args in instructions(text):
        if op == "FROM":
            result.append([])
        if result:
            result[-1].append((op, args))
    return result


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageReplay:
    replay = ImageReplay(tmp_path_factory.mktemp("image"))
    builder, *_, runtime = stages(DOCKERFILE.read_text())
    replay.stage(builder)
    replay.stage(runtime)
    return replay


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def test_image_install_runs_a_job(image: ImageReplay, bootstrap: str, tmp_path: Path) -> None:
    venv = image.paths["/opt/venv"]
    # Only apt-get (build tools; every dependency ships a wheel here) and the user set-up ran
    # elsewhere; everything else of the Dockerfile ran.
    assert all(ROOT_ONLY_RUN.match(s) for s in image.skipped), image.skipped
    assert image.entrypoint == ["jobstream"] and image.cmd == ["worker"]
    entry = shutil.which(image.entrypoint[0], path=image.env["PATH"])
    assert entry == str(venv / "bin" / "jobstream"), entry

    unique = uuid.uuid4().hex[:8]
    job_type = "orders.confirmation"
    port = _free_port()
    app = image.paths["/app"]
    config = tmp_path / "jobstream.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kafka": {"bootstrap_servers": bootstrap},
                # The demo's schemas, where the image has them (the chart's default schemaDirs).
                "schema_dirs": [str(app / "examples" / "schemas")],
                "jobs": {job_type: {"topic": f"t.{unique}.{job_type}", "partitions": 2}},
                "worker": {"group_id": f"g.{unique}", "commit_interval_ms": 200},
                "log": {"format": "json"},
            }
        )
    )
    # As the chart runs the container: its config file and HTTP port, the image's own env.
    env = {
        **image.env,
        "JOBSTREAM_CONFIG": str(config),
        "JOBSTREAM_WORKER__HTTP_PORT": str(port),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*image.entrypoint, *args],
            cwd=app,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # The code that runs is the installed one, not this checkout.
    where = subprocess.run(
        ["python", "-c", "import jobstream.consumers as c; print(c.__file__)"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(venv)), where

    applied = run("topics", "apply", "--job-type", job_type)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    payload = {"order_id": f"o-{unique}", "email": "a@b.c", "total_cents": 1999}
    published = run("publish", job_type, "--json", json.dumps(payload), "--key", "o-1")
    assert published.returncode == 0, published.stdout + published.stderr
    job_id = published.stdout.strip()

    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [entry, *image.cmd, "--app", "examples.demo_jobs", "--job-type", job_type],
            cwd=app,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and worker.poll() is None:
            events = [
                json.loads(line)
                for line in log_path.read_text().splitlines()
                if line.startswith("{")
            ]
            if any(e.get("event") == "succeeded" and e.get("job_id") == job_id for e in events):
                break
            time.sleep(0.3)
        else:
            tail = log_path.read_text()[-3000:]
            pytest.fail(f"job {job_id} not handled (worker exit {worker.poll()}):\n{tail}")
        # The demo handler itself ran (the example module came from the image's /app).
        assert any(e.get("event") == "confirmation_sent" for e in events)
        # HTTP on the image's host (0.0.0.0) and the configured port: ready, and counted.
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        ready_by = time.monotonic() + 20
        while _get(f"http://127.0.0.1:{port}/readyz")[0] != 200:
            assert time.monotonic() < ready_by, "never ready"
            time.sleep(0.3)
        status, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert re.search(
            rf'jobstream_jobs_total\{{job_type="{re.escape(job_type)}",outcome="succeeded"\}} 1\.0',
            metrics,
        ), metrics[-2000:]
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            code = worker.wait(10)
    assert code == 0, log_path.read_text()[-3000:]
