"""Dead letters shaped like the worker's, written straight into a T.dlq, and `jobstream dlq ...`
run as a subprocess: shared by the DLQ command tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings, load_settings
from jobstream.config.topics import job_topics
from jobstream.consumers.ops.topic_plan import apply, full_plan
from jobstream.producers.publisher import Publisher
from jobstream.schemas import wire
from tests.support.harness import ROOT

JT = "orders.confirmation"
NOW_MS = int(time.time() * 1000)


@dataclass
class World:
    settings: Settings
    main: str
    dlq: str
    env: dict[str, str]
    job_type: str = JT
    values: dict[str, bytes] = field(default_factory=dict)  # job id -> value bytes


DEMO_SCHEMAS = [str(ROOT / "examples" / "schemas")]


def make_world(bootstrap: str, tmp: Path, *, partitions: int = 3, job_type: str = JT,
               schema_dirs: list[str] | None = None) -> World:
    """Fresh topics for one job type (main topic jobs.t<random>) and a config file naming them."""
    main = f"jobs.t{uuid.uuid4().hex[:8]}"
    jobs = {job_type: {"topic": main, "partitions": partitions}}
    data: dict[str, Any] = {"kafka": {"bootstrap_servers": bootstrap}, "jobs": jobs}
    data["schema_dirs"] = schema_dirs or DEMO_SCHEMAS
    s = load_settings(**data)
    apply(s, full_plan(s, [job_type]))
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "jobstream.yaml"
    cfg.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSTREAM_")}
    env.update(JOBSTREAM_CONFIG=str(cfg), COLUMNS="250", NO_COLOR="1", PYTHONPATH=str(ROOT))
    return World(s, main, main + ".dlq", env, job_type)


def drop_world(w: World) -> None:
    t = job_topics(w.job_type, w.settings.job(w.job_type))
    admin = AdminClient(client_config(w.settings.kafka))
    for fut in admin.delete_topics([*t.consumed, t.dlq, t.ledger], operation_timeout=30).values():
        with contextlib.suppress(Exception):
            fut.result(30)


def dead_letter_headers(partition: int, job_id: str | None, *, topic: str = "jobs.x.dlq",
                        job_type: str = JT, error_class: str = "builtins.ValueError",
                        category: str = "transient", failed_at: int = NOW_MS, attempt: int = 4,
                        bare: bool = False, version: int = 2) -> wire.HeaderList:
    h: dict[str, str | int] = {wire.ERROR_CATEGORY: category, wire.ERROR_CLASS: error_class,
                               wire.ERROR_MESSAGE: f"{error_class} happened [x]",
                               wire.FAILED_AT: failed_at}
    if not bare:
        h.update({
            wire.JOB_TYPE: job_type, wire.SCHEMA_VERSION: version, wire.JOB_ID: job_id or "",
            wire.ATTEMPT: attempt,
            wire.ENQUEUED_AT: failed_at - 60_000, wire.TRACEPARENT: f"00-{'a' * 32}-{'b' * 16}-01",
            wire.PRODUCER: "test@host:1", wire.PARENT_JOB_ID: "parent-1",
            wire.ERROR_STACK: 'Traceback (most recent call last):\n  File "jobs.py", line 3\n',
            wire.ORIGIN_TOPIC: f"{topic[:-4]}.retry.10m", wire.ORIGIN_PARTITION: partition,
            wire.ORIGIN_OFFSET: 7, wire.FIRST_FAILED_AT: failed_at - 30_000, wire.WORKER: "w-1",
        })
    return wire.encode_headers(h)


def put_dead_letter(pub: Publisher, topic: str, partition: int, job_id: str | None,
                    key: bytes | None, value: bytes, **kw: Any) -> None:
    headers = dead_letter_headers(partition, job_id, topic=topic, **kw)
    pub.send(topic, key, value, headers, partition=partition, check_size=False)


def run(w: World, *args: str, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobstream", *args], env=env or w.env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=ROOT)


def ok(w: World, *args: str) -> str:
    p = run(w, *args)
    assert p.returncode == 0, p.stderr + p.stdout
    return p.stdout


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def audit_of(w: World, command: str | None = None) -> list[dict[str, Any]]:
    """The audit records about this world's DLQ, oldest first."""
    rows = jsonl(ok(w, "audit", "list", "--json", "--limit", "1000"))
    return [r for r in rows if r.get("target") == w.dlq
            and (command is None or r.get("command") == command)]


def record_count(w: World, topic: str) -> int:
    """Records in a topic written without transactions: the sum of its high watermarks."""
    c = Consumer(client_config(w.settings.kafka, **{"group.id": "test-reader"}))
    try:
        n = w.settings.job(w.job_type).partitions
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in range(n))
    finally:
        c.close()


def committed(w: World, group: str) -> dict[int, int]:
    c = Consumer(client_config(w.settings.kafka, **{"group.id": group}))
    try:
        n = w.settings.job(w.job_type).partitions
        tps = c.committed([TopicPartition(w.dlq, p) for p in range(n)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()
