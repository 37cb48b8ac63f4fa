"""`jobstream worker --processes N`: one pod, N worker processes, one HTTP port.

The supervisor starts N copies of the worker command (each a member of the group, each with
its own poll thread, so a pod uses its cores), forwards SIGTERM/SIGINT to them and waits for
all, and restarts a child that died with back-off. A child's exit that says the whole pod is
wrong (bad settings or job module before it was ever ready, the DLQ guard, an assignment
mismatch) stops them all with that code: N restarts would only say it N times.

The pod's port serves the children's /metrics summed (each child serves its own on a loopback
port the supervisor picks), /healthz (every running child healthy) and /readyz (every child
ready)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from jobstream.config.logging import get_logger
from jobstream.config.settings import Settings
from jobstream.consumers.errors import ExitCode
from jobstream.consumers.health import Health, HealthServer

# Exits that mean every child would fail the same way: stop the pod with the code.
_POD_WIDE = (ExitCode.DLQ_GUARD, ExitCode.ASSIGNMENT_MISMATCH)
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_S = 60.0  # a child up this long starts its back-off afresh when it dies
SCRAPE_TIMEOUT_S = 2.0
CHILD_UNREACHABLE = "worker process {n} does not answer on its port"
CHILD_RESTARTING = "worker process {n} is restarting"
CHILD_STARTING = "worker process {n}: starting"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def available_cpus(root: str = "/sys/fs/cgroup") -> int:
    """CPUs this container may use: its cgroup quota (v2, then v1), else the affinity mask."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = _read(f"{root}/cpu.max").split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        try:
            q = int(_read(f"{root}/cpu/cpu.cfs_quota_us"))
            p = int(_read(f"{root}/cpu/cpu.cfs_period_us"))
            if q > 0 and p > 0:
                cpus = min(cpus, max(1, -(-q // p)))
        except (OSError, ValueError):
            pass
    return max(1, cpus)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    n: int
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    started: float = 0.0
    ever_ready: bool = False
    failures: int = 0
    restart_at: float | None = None
    codes: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(self, settings: Settings, argv: Sequence[str], processes: int) -> None:
        self.settings = settings
        self.argv = list(argv)  # the worker command for one child, `--processes 1` included
        self.children = [Child(n) for n in range(processes)]
        self.log = get_logger("jobstream.supervisor")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.restarts = 0

    # -- children ----------------------------------------------------------------------

    def _spawn(self, c: Child) -> None:
        c.port = _free_port("127.0.0.1")
        env = {**os.environ, "JOBSTREAM_WORKER__HTTP_HOST": "127.0.0.1",
               "JOBSTREAM_WORKER__HTTP_PORT": str(c.port), "JOBSTREAM_WORKER__PROCESSES": "1"}
        c.proc = subprocess.Popen(self.argv, env=env)
        c.started, c.restart_at = time.monotonic(), None
        self.log.info("worker_process_started", process=c.n, pid=c.proc.pid, port=c.port)

    def _child_exited(self, c: Child, code: int) -> int | None:
        """What to do about a child that exited while the pod runs: a code to stop the pod
        with, or None after scheduling its restart."""
        c.codes.append(code)
        if code in _POD_WIDE or (code == ExitCode.ERROR and not c.ever_ready):
            self.log.error("worker_process_failed", process=c.n, exit_code=code,
                           action="stopping every worker process")
            return code
        up = time.monotonic() - c.started
        c.failures = 0 if up >= STABLE_S else c.failures + 1
        delay = BACKOFF_S[min(c.failures, len(BACKOFF_S) - 1)]
        c.restart_at = time.monotonic() + delay
        self.restarts += 1
        self.log.warning("worker_process_died", process=c.n, exit_code=code, uptime_s=round(up, 1),
                         restart_in_s=delay)
        return None

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        server = self._serve()
        try:
            for c in self.children:
                self._spawn(c)
            code = self._watch()
            return self._shutdown(code)
        finally:
            if server:
                server.stop()

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self._stop.is_set():  # a second signal: kill at once
            for c in self.children:
                if c.proc and c.proc.poll() is None:
                    c.proc.kill()
            os._exit(ExitCode.SECOND_SIGNAL)
        self.log.info("stopping", signal=signal.Signals(signum).name)
        self._stop.set()

    def _watch(self) -> int | None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            for c in self.children:
                if c.proc is None:
                    if c.restart_at is not None and now >= c.restart_at:
                        self._spawn(c)
                    continue
                code = c.proc.poll()
                if code is None:
                    if not c.ever_ready and self._probe(c, "/readyz")[0]:
                        c.ever_ready = True
                    continue
                c.proc = None
                stop_with = self._child_exited(c, code)
                if stop_with is not None:
                    return stop_with
        return None

    def _shutdown(self, code: int | None) -> int:
        """Stop every child with SIGTERM, wait out their grace, then kill the rest."""
        live = [c for c in self.children if c.proc and c.proc.poll() is None]
        for c in live:
            assert c.proc is not None
            c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.worker.shutdown_grace_s + 15
        codes = []
        for c in live:
            assert c.proc is not None
            try:
                codes.append(c.proc.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                c.proc.kill()
                codes.append(c.proc.wait())
        if code is not None:
            return code
        bad = [x for x in codes if x != 0]
        self.log.info("stopped", exit_codes=codes)
        return bad[0] if bad and bad[0] > 0 else (ExitCode.ERROR if bad else ExitCode.STOPPED)

    # -- the pod's port ----------------------------------------------------------------

    def _probe(self, c: Child, path: str) -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{c.port}{path}",
                                        timeout=SCRAPE_TIMEOUT_S) as r:
                return r.status == 200, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return False, e.read().decode(errors="replace")
        except OSError:
            return False, CHILD_UNREACHABLE.format(n=c.n)

    def _each(self, path: str) -> list[tuple[Child, bool, str]]:
        with self._lock:
            kids = list(self.children)
        with ThreadPoolExecutor(len(kids)) as pool:
            results = list(pool.map(lambda c: self._state(c, path), kids))
        return [(c, ok, why) for c, (ok, why) in zip(kids, results, strict=True)]

    def _state(self, c: Child, path: str) -> tuple[bool, str]:
        if c.proc is None:
            return False, CHILD_RESTARTING.format(n=c.n)
        return self._probe(c, path)

    def _serve(self) -> HealthServer | None:
        ws = self.settings.worker
        if not ws.http_port:
            return None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Summed(self))
        server = HealthServer(ws.http_host, ws.http_port, _PodHealth(self), registry)
        server.start()
        self.log.info("http_listening", host=ws.http_host, port=server.port)
        return server

    def metrics_texts(self) -> list[str]:
        return [why for _c, ok, why in self._each("/metrics") if ok]


class _PodHealth(Health):
    """Healthy while every running child is (a restarting one is the supervisor's business);
    ready when every child is."""

    def __init__(self, sup: Supervisor) -> None:
        super().__init__()
        self.sup = sup

    def healthy(self) -> tuple[bool, str]:
        for c, ok, why in self.sup._each("/healthz"):
            if c.proc is not None and not ok:
                return False, f"worker process {c.n}: {why}"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        for c, ok, why in self.sup._each("/readyz"):
            if not ok:
                return False, why if c.proc is None else f"worker process {c.n}: {why}"
        return True, "ready"


class _Summed:
    """The children's metrics as one process's: samples with the same name and labels added
    up; per-partition gauges (a partition moving between children) take the largest."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for text in self.sup.metrics_texts():
            for fam in text_string_to_metric_families(text):
                families.setdefault(fam.name, Metric(fam.name, fam.documentation, fam.type))
                acc = values.setdefault(fam.name, {})
                for s in fam.samples:
                    if s.name.endswith("_created"):  # a timestamp: no sum of it means anything
                        continue
                    k = (s.name, tuple(sorted(s.labels.items())))
                    if fam.type == "gauge" and "partition" in s.labels:
                        acc[k] = max(acc.get(k, s.value), s.value)
                    else:
                        acc[k] = acc.get(k, 0.0) + s.value
        yield from _families(families, values, len(self.sup.children), self.sup.restarts)


def _families(families: dict[str, Metric],
              values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]],
              processes: int, restarts: int) -> Iterator[Metric]:
    for name, fam in families.items():
        for (sample, labels), v in values[name].items():
            fam.add_sample(sample, dict(labels), v)
        yield fam
    procs = Metric("jobstream_worker_processes", "Worker processes of this pod.", "gauge")
    procs.add_sample("jobstream_worker_processes", {}, processes)
    yield procs
    rs = Metric("jobstream_worker_restarts", "Worker processes restarted after dying.", "counter")
    rs.add_sample("jobstream_worker_restarts_total", {}, restarts)
    yield rs


def child_argv(argv: Sequence[str]) -> list[str]:
    """This worker command for one child: the same arguments, `--processes 1`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--processes":
            skip = True
            continue
        if a.startswith("--processes="):
            continue
        out.append(a)
    return [sys.executable, "-m", "jobstream", *out, "--processes", "1"]
