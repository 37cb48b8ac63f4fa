"""A real Worker (consumers/runtime/loop.py) on the in-memory Kafka: the loop runs on a thread
of its own, its clients come from the fake cluster (make_consumer / make_producer, and
patch_clients for the ledger restore, crash records and topic plan), and the test reads the
outcome from the cluster: topics, committed offsets, handler runs. Milliseconds per scenario."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from jobstream.config.settings import Settings
from jobstream.config.topics import job_topics
from jobstream.consumers.jobs import JobDef
from jobstream.consumers.ops.topic_plan import apply, full_plan
from jobstream.consumers.runtime.hooks import Hook
from jobstream.consumers.runtime.loop import Worker
from jobstream.producers.publisher import Publisher
from jobstream.schemas import wire
from tests.support.fake_kafka import FakeCluster, patch_clients

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
JOB_TYPE = "test.echo"
MODULES = (
    "jobstream.consumers.runtime.clients",
    "jobstream.consumers.runtime.ledger",
    "jobstream.consumers.runtime.ledger_tail",
    "jobstream.consumers.runtime.crashes",
    "jobstream.consumers.ops.topic_plan",
    "jobstream.producers.publisher",
    "jobstream.producers.limits",
    "jobstream.producers.connection",
)


class Runs:
    """What handlers did: every run's (seq, attempt), in order; and gates a test can hold."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[int, int]] = []
        self.hold = threading.Event()
        self.hold.set()  # handlers with behaviour "held" wait for this
        self.running = 0

    def seqs(self) -> Counter[int]:
        with self.lock:
            return Counter(s for s, _ in self.log)


class Rig:
    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        *,
        worker: dict[str, Any] | None = None,
        job: dict[str, Any] | None = None,
        partitions: int = 2,
        hooks: Iterable[Hook] = (),
        handler: Callable[[dict[str, Any], Any], None] | None = None,
    ) -> None:
        self.cluster = FakeCluster()
        patch_clients(monkeypatch, self.cluster, MODULES)
        self.settings = Settings.model_validate({
            "kafka": {"bootstrap_servers": "fake:9092"},
            "schema_dirs": [str(SCHEMAS)],
            "worker": {"commit_interval_ms": 20, "revoke_grace_s": 5, "shutdown_grace_s": 5,
                       "group_id": "g", **(worker or {})},
            "jobs": {JOB_TYPE: {"topic": "t.echo", "partitions": partitions,
                                "retry_tiers": ["1s", "2s"], **(job or {})}},
        })
        apply(self.settings, full_plan(self.settings, [JOB_TYPE]))
        self.topics = job_topics(JOB_TYPE, self.settings.job(JOB_TYPE))
        self.runs = Runs()
        self.hooks = list(hooks)
        self.handler = handler or self._handle
        self.workers: list[Worker] = []
        self.threads: list[threading.Thread] = []
        self.codes: dict[int, int] = {}
        self.publisher = Publisher(self.settings)

    # -- the handler ----------------------------------------------------------------------------

    def _handle(self, payload: dict[str, Any], ctx: Any) -> None:
        runs = self.runs
        with runs.lock:
            runs.log.append((payload["seq"], ctx.attempt))
            runs.running += 1
        try:
            behaviour = payload["behaviour"]
            if behaviour == "held":
                runs.hold.wait(10)
            elif behaviour.startswith("fail_until:"):
                if ctx.attempt < int(behaviour.split(":")[1]):
                    raise ConnectionError("transient")
            elif behaviour == "permanent":
                from jobstream.consumers.errors import PermanentError

                raise PermanentError("bad order")
            elif behaviour == "child":
                ctx.enqueue(JOB_TYPE, {"seq": payload["seq"] + 1000, "behaviour": "ok"})
            elif behaviour.startswith("sleep_ms:"):
                time.sleep(int(behaviour.split(":")[1]) / 1000)
        finally:
            with runs.lock:
                runs.running -= 1

    # -- driving ----------------------------------------------------------------------------------

    def publish(self, seq: int, behaviour: str = "ok", key: str | None = None) -> str:
        return self.publisher.publish(JOB_TYPE, {"seq": seq, "behaviour": behaviour},
                                      key=key or f"k{seq}")

    def start(self, **kwargs: Any) -> Worker:
        jobs = {JOB_TYPE: JobDef(JOB_TYPE, self.handler, False)}
        w = Worker(self.settings, jobs, make_consumer=self.cluster.consumer,
                   make_producer=self.cluster.producer, hooks=self.hooks, **kwargs)
        i = len(self.workers)
        t = threading.Thread(target=lambda: self.codes.__setitem__(i, w.run()),
                             name=f"fake-worker-{i}", daemon=True)
        self.workers.append(w)
        self.threads.append(t)
        t.start()
        return w

    def wait(self, cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            for i, t in enumerate(self.threads):
                if not t.is_alive() and i not in self.codes:
                    raise AssertionError(f"worker {i} died waiting for {what}")
            time.sleep(0.002)

    def stop(self, i: int = 0, timeout: float = 10) -> int:
        self.workers[i].stop("SIGTERM")
        self.threads[i].join(timeout)
        assert not self.threads[i].is_alive(), "the worker did not stop"
        return self.codes[i]

    def exited(self, i: int = 0, timeout: float = 5) -> int:
        self.threads[i].join(timeout)
        assert not self.threads[i].is_alive(), "the worker did not exit"
        return self.codes[i]

    def close(self) -> None:
        for i, t in enumerate(self.threads):
            if t.is_alive():
                self.workers[i].stop()
                t.join(10)
        self.publisher.close()

    # -- reading the books ------------------------------------------------------------------------

    def values(self, topic: str) -> list[Any]:
        return self.cluster.records(topic)

    def ids(self, topic: str) -> list[str]:
        return [dict(m.headers() or [])[wire.JOB_ID].decode() for m in self.cluster.records(topic)]

    def ledger_keys(self) -> list[str]:
        return [m.key().decode() for m in self.cluster.records(self.topics.ledger)
                if not m.key().startswith(b"!")]

    def committed_to_end(self) -> bool:
        committed = self.cluster.committed("g")
        for p in range(len(self.cluster.topics[self.topics.main].partitions)):
            end = self.cluster.watermarks(self.topics.main, p)[1]
            if end and committed.get((self.topics.main, p), 0) < end:
                return False
        return True
