"""Test harness: an isolated topic set per test, real worker processes, and the sink they
write every handler run to. Everything talks to the real broker."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from jobstream.config.kafka import client_config
from jobstream.config.settings import load_settings
from jobstream.consumers.ops.topic_plan import apply, full_plan
from jobstream.consumers.runtime.heads import HEAD_PREFIX
from jobstream.consumers.runtime.ledger import STARTED_PREFIX
from jobstream.schemas.ledger_entry import SUCCEEDED, decode_entry
from tests.support.stack import (  # noqa: F401  (free_port: imported from here by tests)
    ROOT,
    BaseStack,
    child_env,
    free_port,
    watermark,
)

TEST_SCHEMAS = ROOT / "tests" / "schemas"


@dataclass
class Stack(BaseStack):
    """A test's stack: its scratch directory holds the settings, the worker logs and the sink
    (tests/apps/sink.py appends a line per handler run)."""

    @property
    def tmp(self) -> Path:
        return self.dir

    @property
    def sink(self) -> Path:
        return self.dir / "sink.jsonl"

    def env(self, **extra: str) -> dict[str, str]:
        return child_env(
            JOBSTREAM_CONFIG=str(self.config_path), JOBSTREAM_TEST_SINK=str(self.sink), **extra
        )

    def publish_many(
        self, payloads: list[tuple[dict[str, Any], str | None]], **kw: Any
    ) -> list[str]:
        ids = []
        with self.publisher() as pub:
            for payload, key in payloads:
                ids.append(pub.publish_async(self.job_type, payload, key=key, **kw))
        return ids

    def produce_raw(
        self,
        records: list[tuple[int | None, bytes | None, bytes | None, list[tuple[str, bytes]]]],
        topic: str | None = None,
    ) -> list[tuple[int, int]]:
        """Produce prepared (partition, key, value, headers) records as they are, bypassing
        the publisher's checks (bad input on purpose); their (partition, offset)s in order."""
        p = Producer(client_config(self.settings.kafka, **{"linger.ms": 5}))
        where: list[tuple[int, int]] = [(-1, -1)] * len(records)
        errors: list[str] = []
        for i, (part, key, value, headers) in enumerate(records):

            def cb(err: Any, msg: Any, i: int = i) -> None:
                if err is not None:
                    errors.append(str(err))
                else:
                    where[i] = (msg.partition(), msg.offset())

            kw: dict[str, Any] = {"headers": headers, "on_delivery": cb}
            if part is not None:
                kw["partition"] = part
            while True:
                try:
                    p.produce(topic or self.topics.main, value, key, **kw)
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
        remaining = p.flush(60)
        if remaining or errors:
            raise AssertionError(f"{remaining} records unsent, errors: {errors[:3]}")
        return where

    def start_worker(
        self, *args: str, log_name: str | None = None, stdout: bool = False, **env: str
    ) -> subprocess.Popen[bytes]:
        """stdout: write the worker's stdout to its log file too (else it is discarded)."""
        log = self.tmp / (log_name or f"worker-{len(self.procs)}.log")
        return self.spawn_worker("tests.apps.sink", args, log, self.env(**env), stdout)

    def runs(self) -> list[dict[str, Any]]:
        if not self.sink.exists():
            return []
        text = self.sink.read_text()
        # Only whole lines: a worker's append can be read half done (the kernel grows the file
        # page by page), as tests/chaos/books.py SinkTail knows too. Seen once in CI.
        text = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_for(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            for p in self.procs:
                if p.poll() not in (None, 0, -9, -15):
                    raise AssertionError(
                        f"a worker died with {p.returncode} while waiting for "
                        f"{what}; logs in {self.tmp}"
                    )
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; logs in {self.tmp}")

    def wait_runs(self, n: int, timeout: float = 60) -> list[dict[str, Any]]:
        self.wait_for(
            lambda: len({r["job_id"] for r in self.runs()}) >= n,
            timeout,
            f"{n} distinct jobs handled",
        )
        return self.runs()

    def ledger_records(self, timeout: float = 10) -> list[Any]:
        """The committed ledger records, minus the crash evidence (consumers/runtime/crashes.py)
        and the history chain heads (consumers/runtime/history.py)."""
        prefixes = (STARTED_PREFIX.encode(), HEAD_PREFIX.encode())
        return [
            m for m in self.read_topic(self.topics.ledger, timeout=timeout)
            if not (m.key() or b"").startswith(prefixes)
        ]

    def ledger_entries(self, timeout: float = 30) -> list[tuple[str, dict[str, Any]]]:
        """(job id, entry) of every committed completion in the ledger (read_committed); the
        routing marks (keyed by record position) are left out."""
        out = []
        for m in self.ledger_records(timeout=timeout):
            entry = decode_entry(m.value()) if m.value() is not None else None
            if m.key() is not None and entry is not None and entry["status"] == "succeeded":
                out.append((m.key().decode(), entry))
        return out

    def delete_topics(self) -> None:
        """Drop the job type's topics: a suite creates thousands of partitions, and a broker
        that keeps them all slows down and, at its default heap, ran out of memory."""
        t = self.topics
        admin = AdminClient(client_config(self.settings.kafka))
        names = [*t.consumed, t.dlq, t.ledger]
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # gone already, or the broker is down
                fut.result(30)


def make_stack(
    tmp: Path,
    bootstrap: str,
    unique: str,
    *,
    job_type: str = "test.echo",
    job: dict[str, Any] | None = None,
    worker: dict[str, Any] | None = None,
    create: bool = True,
) -> Stack:
    job_cfg = {
        "topic": f"t.{unique}.{job_type}",
        "partitions": 6,
        "retry_tiers": ["1s", "2s"],
        "max_attempts": 4,
        "timeout_s": 10,
        **(job or {}),
    }
    worker_cfg = {
        "group_id": f"g.{unique}",
        "http_port": 0,
        "commit_interval_ms": 200,
        "shutdown_grace_s": 20,
        "session_timeout_ms": 6000,
        # JOBSTREAM_TEST_ASSIGNMENT / _MODE run the suite under another worker.assignment or
        # worker.mode.
        "assignment": os.environ.get("JOBSTREAM_TEST_ASSIGNMENT", "range"),
        "mode": os.environ.get("JOBSTREAM_TEST_MODE", "transactional"),
        **(worker or {}),
    }
    data = {
        "kafka": {"bootstrap_servers": bootstrap},
        "schema_dirs": [str(TEST_SCHEMAS)],
        "jobs": {job_type: job_cfg},
        "worker": worker_cfg,
        "log": {"format": "json"},
    }
    tmp = tmp / unique
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "jobstream.yaml"
    path.write_text(yaml.safe_dump(data))
    settings = load_settings(**{k: v for k, v in data.items()})
    if create:
        apply(settings, full_plan(settings, [job_type]))
    return Stack(settings, path, tmp, job_type)


def set_max_message_bytes(bootstrap: str, topic: str, value: str | None) -> None:
    """Set a topic's max.message.bytes (None: back to the broker's default), so the broker
    refuses records the client let through."""
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("max.message.bytes", value, incremental_operation=op)],
    )
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result(15)
    # The broker applies a config change a moment after acknowledging it (seen under load: a
    # record sent right after was still taken); wait until the broker describes the new value.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        desc = ConfigResource(ConfigResource.Type.TOPIC, topic)
        entry = next(iter(admin.describe_configs([desc]).values())).result(15)["max.message.bytes"]
        if (entry.value == value) if value is not None else entry.is_default:
            time.sleep(0.5)  # described by the controller's view; let the leader catch up
            return
        time.sleep(0.2)


def pid_of_worker(worker_id: str) -> int | None:
    """The process id inside a worker id (`<host>-<pid>-<tag>`; the host may hold dashes)."""
    parts = worker_id.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def recorded_completions(
    runs: list[dict[str, Any]], ledger: list[tuple[str, dict[str, Any]]]
) -> dict[str, float]:
    """Job id -> when its completion was first recorded: the end (sink time, seconds) of the
    run whose ledger record was committed. A ledger entry names the worker (and so its pid)
    and the attempt; its run is that process's run of that attempt that ended last before the
    entry's finished_at (a worker that rewound after an aborted commit runs a job twice with
    the same attempt, and only the later run is the one recorded). When no run matches (the
    sink lost a line), the entry's finished_at, which is after the run's end, stands in."""
    by_job: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_job.setdefault(r["job_id"], []).append(r)
    out: dict[str, float] = {}
    for jid, entry in ledger:
        if entry.get("status") != SUCCEEDED:
            continue
        finished = entry["finished_at"]
        pid = pid_of_worker(entry["worker"])
        ends = [
            r["end"]
            for r in by_job.get(jid, ())
            if r["pid"] == pid and r["attempt"] == entry["attempt"]
            and int(r["end"] * 1000) <= finished
        ]
        end = max(ends) if ends else finished / 1000
        out[jid] = min(out.get(jid, end), end)
    return out


def runs_after_completion(
    runs: list[dict[str, Any]], ledger: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Runs that started after an earlier run of the same job had ended with its completion
    recorded (ledger record committed): each one breaks "a handler does not run again after
    its completion is recorded". Runs inside the crash window (a run whose record was never
    committed, then a rerun) are allowed and not counted."""
    recorded = recorded_completions(runs, ledger)
    return [r for r in runs if r["job_id"] in recorded and r["start"] > recorded[r["job_id"]]]


def run_cli(
    *args: str | bytes, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m consumers.cli ARGS` with no JOBSTREAM_* variable of the caller's, only `env`."""
    return subprocess.run(
        [sys.executable, "-m", "jobstream", *args],
        capture_output=True,
        text=True,
        errors="replace",
        env=child_env(**(env or {})),
        cwd=cwd,
        timeout=timeout,
    )
