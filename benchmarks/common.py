"""Shared pieces of the benchmarks: result rows, per-benchmark settings and topics, worker
subprocesses, filling topics and waiting for commits. Everything talks to one broker."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings, load_settings
from jobstream.consumers.ops.topic_plan import apply, full_plan
from tests.support.stack import (  # noqa: F401  (imported from here by the benchmarks)
    ROOT,
    BaseStack,
    child_env,
    end_offsets,
    free_port,
    reader,
)

BENCH_SCHEMAS = ROOT / "benchmarks" / "schemas" / "avro"
PAYLOAD_BYTES = 100
PY_SPY = Path(sys.executable).parent / "py-spy"  # bench --profile (requirements-dev.txt)
PARTITIONS = 6


# -- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One figure: measured next to its baseline, the ratio and the target."""

    bench: str
    name: str
    measured: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    ratio: float | None = None
    target: str = ""  # e.g. ">= 0.85 x raw", "<= 25 ms"
    passed: bool | None = None  # None: informational, no target
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio_row(
    bench: str,
    name: str,
    measured: float,
    baseline: float,
    unit: str,
    baseline_name: str,
    at_least: float | None,
    note: str = "",
) -> Row:
    ratio = measured / baseline if baseline else 0.0
    return Row(
        bench,
        name,
        measured,
        unit,
        baseline,
        baseline_name,
        ratio,
        f">= {at_least:g} x baseline" if at_least is not None else "",
        (ratio >= at_least) if at_least is not None else None,
        note,
    )


def limit_row(
    bench: str, name: str, measured: float, unit: str, at_most: float | None, note: str = ""
) -> Row:
    return Row(
        bench,
        name,
        measured,
        unit,
        target=f"<= {at_most:g} {unit}" if at_most is not None else "",
        passed=(measured <= at_most) if at_most is not None else None,
        note=note,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- run context -----------------------------------------------------------------------------


@dataclass
class Bench:
    """One `run.py` invocation: broker, run id, scratch directory, sizes, shared figures."""

    bootstrap: str
    run_id: str
    tmp: Path
    quick: bool
    keep_logs: bool = False
    profile_dir: Path | None = None
    shared: dict[str, float] = field(default_factory=dict)  # e.g. max rates for latency
    notes: list[str] = field(default_factory=list)
    _topic_prefixes: list[str] = field(default_factory=list)
    _stacks: list[Stack] = field(default_factory=list)

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def stack(
        self,
        name: str,
        job_type: str,
        *,
        job: dict[str, Any] | None = None,
        worker: dict[str, Any] | None = None,
    ) -> Stack:
        """A settings file and a fresh topic set (main, tiers, DLQ, ledger) for one job type."""
        topic = f"bench.{self.run_id}.{name}"
        self._topic_prefixes.append(topic)
        data = {
            "kafka": {"bootstrap_servers": self.bootstrap},
            "schema_dirs": [str(BENCH_SCHEMAS)],
            "jobs": {
                job_type: {
                    "topic": topic,
                    "partitions": PARTITIONS,
                    "retry_tiers": ["1s", "10s"],
                    "max_attempts": 4,
                    "timeout_s": 30,
                    **(job or {}),
                }
            },
            "worker": {"group_id": f"g.{self.run_id}.{name}", "http_port": 0, **(worker or {})},
            "log": {"format": "json"},
        }
        d = self.tmp / name
        d.mkdir(parents=True, exist_ok=True)
        path = d / "jobstream.yaml"
        path.write_text(yaml.safe_dump(data))
        settings = load_settings(**data)
        apply(settings, full_plan(settings, [job_type]))
        stack = Stack(settings, path, d, job_type, bench=self, name=name)
        self._stacks.append(stack)
        return stack

    def stop_all_workers(self) -> None:
        """Stop every worker this run started that is still running (after an error)."""
        for stack in self._stacks:
            stack.stop_workers()

    def create_topic(self, name: str, partitions: int = PARTITIONS) -> str:
        """A plain topic of this run (e.g. the raw loop's ledger-sized output)."""
        topic = f"bench.{self.run_id}.{name}"
        self._topic_prefixes.append(topic)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # usable once its partitions have a leader
            md = admin.list_topics(topic, timeout=10).topics.get(topic)
            if (
                md is not None
                and md.error is None
                and len(md.partitions) == partitions
                and all(p.leader >= 0 for p in md.partitions.values())
            ):
                return topic
            time.sleep(0.1)
        raise BenchError(f"topic {topic} not usable after 30s")

    def cleanup_topics(self) -> None:
        """Delete this run's topics (the broker's disk is shared by later runs)."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        names = [
            t
            for t in admin.list_topics(timeout=10).topics
            if any(t.startswith(p) for p in self._topic_prefixes)
        ]
        if names:
            for fut in admin.delete_topics(names, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result(timeout=30)


@dataclass
class Stack(BaseStack):
    """A benchmark's stack: its directory holds the settings, worker logs, marks and sink."""

    bench: Bench = field(kw_only=True)
    name: str = field(kw_only=True)
    ports: list[int] = field(default_factory=list, kw_only=True)
    profilers: list[subprocess.Popen[bytes]] = field(default_factory=list, kw_only=True)

    @property
    def marks(self) -> Path:
        return self.dir / "marks.txt"

    @property
    def sink(self) -> Path:
        return self.dir / "sink.txt"

    def fill(self, n: int, payload: Callable[[int], dict[str, Any]] | None = None) -> None:
        """Publish n jobs with the real Publisher (each its own job id and key)."""
        make = payload or bench_payload
        with self.publisher() as pub:
            for i in range(n):
                pub.publish_async(self.job_type, make(i))
            pub.flush(120)

    # -- workers -------------------------------------------------------------------------

    def start_worker(
        self, http: bool = False, args: tuple[str, ...] = (), **env: str
    ) -> subprocess.Popen[bytes]:
        port = free_port() if http else 0
        n = len(self.procs)
        env = child_env(
            JOBSTREAM_CONFIG=str(self.config_path),
            JOBSTREAM_BENCH_MARKS=str(self.marks),
            JOBSTREAM_BENCH_SINK=str(self.sink),
            JOBSTREAM_WORKER__HTTP_PORT=str(port),
            **env,
        )
        proc = self.spawn_worker("benchmarks.jobs", args, self.dir / f"worker-{n}.log", env, False)
        if self.bench.profile_dir is not None:
            # Attached by pid, so SIGTERM reaches the worker; py-spy writes when it exits.
            out = self.bench.profile_dir / f"profile-{self.name}-{n}.txt"
            spy = str(PY_SPY)
            self.profilers.append(
                subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(proc.pid),
                        "--format",
                        "raw",
                        "--rate",
                        "200",
                        "--nonblocking",
                        "-o",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        self.ports.append(port)
        return proc

    def check_alive(self) -> None:
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                log = self.dir / f"worker-{i}.log"
                tail = (
                    log.read_text(errors="replace").strip().splitlines()[-3:]
                    if log.exists()
                    else []
                )
                raise BenchError(
                    f"{self.name}: worker {i} exited with {p.returncode}; its log ends: "
                    + " | ".join(line[:300] for line in tail)
                )

    def wait_ready(self, timeout: float = 90) -> list[int]:
        """Every worker answers /readyz and the group is stable with one member per worker and
        every main-topic partition assigned (so no rebalance moves work once jobs arrive).
        Returns how many main-topic partitions each member holds, most first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if all(_ready(p) for p in self.ports):
                owned = self.main_partitions_per_member()
                if owned is not None:
                    return owned
            time.sleep(0.2)
        raise BenchError(f"{self.name}: workers not ready within {timeout}s; logs in {self.dir}")

    def main_partitions_per_member(self) -> list[int] | None:
        """Main-topic partitions per group member, or None while the group is not stable with
        one member per worker holding all of them. A member may hold none: the assignor
        balances partitions over every subscribed topic (main and retry tiers) together."""
        admin = AdminClient(client_config(self.settings.kafka))
        try:
            desc = admin.describe_consumer_groups([self.group])[self.group].result(timeout=5)
        except Exception:
            return None
        if str(desc.state).rsplit(".", 1)[-1] != "STABLE" or len(desc.members) != len(self.procs):
            return None
        main = self.topics.main
        owned = [
            sum(1 for tp in m.assignment.topic_partitions if tp.topic == main) for m in desc.members
        ]
        return sorted(owned, reverse=True) if sum(owned) == PARTITIONS else None

    def stop_workers(self, timeout: float = 60) -> None:
        self.stop_all(timeout=timeout)
        for spy in self.profilers:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(10)
        self.procs.clear()
        self.profilers.clear()

    # -- offsets and timing --------------------------------------------------------------

    def wait_committed(
        self, ends: dict[int, int], timeout: float, topic: str | None = None
    ) -> float:
        """Wall time at which the group's committed offsets reached `ends` (polled every
        50 ms)."""
        return wait_committed(
            self.settings, self.group, topic or self.topics.main, ends, timeout, self.check_alive
        )

    def first_run(self) -> float:
        """Earliest first-handler-run mark over the worker processes."""
        return min(float(line.split()[1]) for line in self.marks.read_text().splitlines())

    def tidy(self) -> None:
        """Remove worker logs (they hold a JSON line per lifecycle step) unless kept."""
        if not self.bench.keep_logs:
            for log in self.dir.glob("worker-*.log"):
                log.unlink(missing_ok=True)


class BenchError(RuntimeError):
    """A benchmark could not run to its end (a worker died, a wait timed out)."""


# -- payloads --------------------------------------------------------------------------------


def _varint_len(n: int) -> int:
    length = 1
    while n >= 0x80:
        n >>= 7
        length += 1
    return length


def _zigzag(n: int) -> int:
    return n * 2 if n >= 0 else -n * 2 - 1


def bench_payload(seq: int) -> dict[str, Any]:
    """A bench.noop / bench.sleep payload whose Avro encoding is exactly 100 bytes."""
    fixed = _varint_len(_zigzag(seq))
    body = PAYLOAD_BYTES - fixed - 2  # body lengths 64..8191 take a 2-byte length prefix
    return {"seq": seq, "body": "x" * body}


def retry_payload(seq: int, delay_s: int) -> dict[str, Any]:
    fixed = _varint_len(_zigzag(seq)) + _varint_len(_zigzag(delay_s))
    return {"seq": seq, "delay_s": delay_s, "body": "x" * (PAYLOAD_BYTES - fixed - 2)}


# -- broker helpers --------------------------------------------------------------------------


def wait_committed(
    settings: Settings,
    group: str,
    topic: str,
    ends: dict[int, int],
    timeout: float,
    check: Callable[[], None] | None = None,
) -> float:
    c = reader(settings, group)
    tps = [TopicPartition(topic, p) for p in ends]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                got = {tp.partition: tp.offset for tp in c.committed(tps, timeout=10)}
            except Exception:
                got = {}
            now = time.time()
            if got and all(got.get(p, -1) >= end for p, end in ends.items()):
                return now
            if check:
                check()
            time.sleep(0.05)
    finally:
        c.close()
    raise BenchError(f"group {group}: offsets of {topic} not committed to {ends} in {timeout}s")


def _ready(port: int) -> bool:
    if not port:
        return True
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except Exception:
        return False


@contextlib.contextmanager
def scratch_dir(keep: bool) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="jsbench-"))
    try:
        yield d
    finally:
        if not keep:
            import shutil

            shutil.rmtree(d, ignore_errors=True)


def fetch_gaps(log: Path, gap_s: float = 0.05) -> tuple[float, float, int]:
    """From a worker's JSON log: (span of `succeeded` events in s, time inside gaps of at least
    gap_s between consecutive `succeeded` events, number of such gaps). A busy poll loop takes
    records without pauses; long gaps mean it waited for the broker to hand it records. (The
    `received` event is DEBUG only: `succeeded` is the per-job event at INFO.)"""
    stamps = []
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"succeeded"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "succeeded":
                ts = datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))
                stamps.append(ts.timestamp())
    if len(stamps) < 2:
        return 0.0, 0.0, 0
    stamps.sort()
    gaps = [b - a for a, b in itertools.pairwise(stamps) if b - a >= gap_s]
    return stamps[-1] - stamps[0], sum(gaps), len(gaps)
