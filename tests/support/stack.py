"""The base of the two stack harnesses (tests/support/harness.py for tests, benchmarks/common.py
for benchmarks): one job type's settings file and topics on the real broker, the worker
processes started for it, and the reads both need (a topic's records, end offsets, committed
offsets)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings
from jobstream.config.topics import JobTopics, job_topics
from jobstream.producers import Publisher

ROOT = Path(__file__).resolve().parent.parent.parent


def child_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any JOBSTREAM_* variable, the repo on PYTHONPATH, and
    `extra`: a child sees only the settings a test or benchmark gives it."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("JOBSTREAM_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@dataclass
class BaseStack:
    settings: Settings
    config_path: Path
    dir: Path
    job_type: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list, kw_only=True)

    @property
    def topics(self) -> JobTopics:
        return job_topics(self.job_type, self.settings.job(self.job_type))

    @property
    def group(self) -> str:
        return self.settings.worker.group_id

    def publisher(self, **producer_config: Any) -> Publisher:
        return Publisher(self.settings, producer_config=producer_config or None)

    def spawn_worker(
        self, app: str, args: tuple[str, ...], log: Path, env: dict[str, str], stdout: bool
    ) -> subprocess.Popen[bytes]:
        """`jobstream worker --app APP --job-type T ARGS` with `env` only (see child_env), its
        stderr (and stdout if asked) appended to `log`."""
        cmd = [sys.executable, "-m", "jobstream", "worker", "--app", app,
               "--job-type", self.job_type, *args]
        with open(log, "ab") as err:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                cmd, env=env, stdout=err if stdout else subprocess.DEVNULL, stderr=err, cwd=ROOT
            )
        self.procs.append(proc)
        return proc

    def stop_all(self, sig: int = signal.SIGTERM, timeout: float = 40) -> list[int | None]:
        """Signal every worker still running, wait for each; kill one that outlives `timeout`
        (its code is then None)."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(sig)
        codes: list[int | None] = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
                codes.append(None)
        return codes

    def end_offsets(self, topic: str | None = None) -> dict[int, int]:
        return end_offsets(self.settings, topic or self.topics.main)

    def committed(self, topic: str | None = None) -> dict[int, int]:
        """The group's committed offset per partition of `topic` (default the main topic)."""
        topic = topic or self.topics.main
        c = Consumer(client_config(self.settings.kafka, **{"group.id": self.group}))
        n = self.settings.job(self.job_type).partitions
        try:
            res = c.committed([TopicPartition(topic, p) for p in range(n)], timeout=10)
        finally:
            c.close()
        return {tp.partition: tp.offset for tp in res}

    def read_topic(self, topic: str, timeout: float = 10) -> list[Any]:
        """Every committed record of a topic (read_committed), up to its end offsets."""
        c = reader(self.settings, **{"isolation.level": "read_committed",
                                     "enable.partition.eof": True})
        md = c.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p, 0) for p in md.partitions]
        ends = {p.partition: watermark(c, p) for p in parts}
        c.assign(parts)
        out: list[Any] = []
        pending = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for m in c.consume(500, timeout=0.5):
                if not m.error():  # end-of-partition may be a dangling transaction's LSO
                    out.append(m)
            for tpo in c.position([TopicPartition(topic, p) for p in pending]):
                if tpo.offset >= ends[tpo.partition]:
                    pending.discard(tpo.partition)
        c.close()
        return out


def reader(settings: Settings, group: str = "test-reader", **extra: Any) -> Consumer:
    return Consumer(
        client_config(settings.kafka, **{"group.id": group, "enable.auto.commit": False, **extra})
    )


def watermark(c: Consumer, tp: TopicPartition) -> int:
    """High watermark, retried: right after topic creation a leader may not be known yet."""
    for attempt in range(20):
        try:
            return int(c.get_watermark_offsets(tp, timeout=10)[1])
        except Exception:
            if attempt == 19:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The high watermark of every partition of `topic`."""
    c = reader(settings)
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        return {p: watermark(c, TopicPartition(topic, p)) for p in md.partitions}
    finally:
        c.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
