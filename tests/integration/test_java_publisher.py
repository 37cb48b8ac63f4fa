"""Issue 27 (publishing from other languages): the Java reference publisher in examples/java
(kafka-clients 4.1.1 + Apache Avro, none of jobstream's code) against a real broker and a real
worker. Before, a Java team had to read three Python files to publish a job, and nothing showed
that what they wrote would run. Now the Java example writes the test vectors of
docs/wire-format.md byte for byte, its jobs (v2 and v1) run, Java's default partitioner puts each
key where the Python publisher does, and every malformed record the page lists lands in the DLQ
with the page's category; with `--cloudevents` it writes the page's CloudEvents vector and its
CloudEvents run on a job type that accepts them. Maven builds the example (`mvn -q -B package`,
cached in ~/.m2); a missing mvn or java fails the test, it never skips."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from jobstream.schemas import cloudevents as ce
from jobstream.schemas import wire
from tests import wire_cloudevents as wce
from tests import wire_vectors as wv
from tests.support.harness import ROOT, TEST_SCHEMAS, Stack

JAVA_DIR = ROOT / "examples" / "java"
GOOD = '{"seq": {i}, "customer": "c-{i}", "amount_cents": {i}}'


@pytest.fixture(scope="module")
def jar() -> Path:
    for tool in ("mvn", "java"):
        if shutil.which(tool) is None:
            pytest.fail(
                f"{tool} not found: the Java example needs Maven and a JDK 17+ "
                "(apt-get install maven openjdk-17-jdk-headless)",
                pytrace=False,
            )
    started = time.monotonic()
    res = subprocess.run(
        ["mvn", "-q", "-B", "package"],
        cwd=JAVA_DIR,
        capture_output=True,
        text=True,
        timeout=900,  # a cold ~/.m2 downloads the plugins and libraries first
    )
    if res.returncode != 0:
        pytest.fail(
            f"mvn -q -B package failed in {JAVA_DIR} (exit {res.returncode}):\n"
            f"{(res.stdout + res.stderr)[-3000:]}",
            pytrace=False,
        )
    print(f"examples/java built in {time.monotonic() - started:.1f}s")
    return JAVA_DIR / "target" / "jobstream-publisher.jar"


def java(jar: Path, *args: str, cwd: Path = ROOT) -> list[dict[str, Any]]:
    """Run the publisher; its stdout lines as JSON."""
    res = subprocess.run(
        ["java", "-jar", str(jar), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, f"java publisher exit {res.returncode}: {res.stderr[-2000:]}"
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def worker_stack(stack_factory: Any) -> Stack:
    stack: Stack = stack_factory(job_type=wv.JOB_TYPE)
    # start_worker names tests.apps.sink; a second --app wins (the CLI keeps an option's last
    # value), and tests.apps.wire is the module with the test.wire handler.
    stack.start_worker("--app", "tests.apps.wire")
    return stack


def publish(jar: Path, stack: Stack, *args: str) -> list[dict[str, Any]]:
    return java(
        jar,
        "--bootstrap", stack.settings.kafka.bootstrap_servers,
        "--job-type", wv.JOB_TYPE,
        "--schema-dir", str(TEST_SCHEMAS),
        "--topic", stack.topics.main,
        *args,
    )


def test_java_writes_the_documented_vectors(jar: Path) -> None:
    for v in wv.vectors():
        h = dict(v["headers"])
        args = [
            "--dry-run", "--partitions", "6",
            "--job-type", wv.JOB_TYPE, "--schema-dir", str(TEST_SCHEMAS), "--topic", v["topic"],
            "--payload", json.dumps(v["payload"]),  # ASCII escapes: no locale in the way
            "--schema-version", h[wire.SCHEMA_VERSION],
            "--job-id", h[wire.JOB_ID],
            "--traceparent", h[wire.TRACEPARENT],
            "--enqueued-at", h[wire.ENQUEUED_AT],
            "--producer", h[wire.PRODUCER],
        ]
        if v["key"] is not None:
            args += ["--key", v["key"]]
        if wire.PARENT_JOB_ID in h:
            args += ["--parent-job-id", h[wire.PARENT_JOB_ID]]
        for k, val in h.items():
            if not k.startswith("js-") and k != wire.TRACEPARENT:
                args += ["--header", f"{k}={val}"]
        (out,) = java(jar, *args)
        assert out["key_hex"] == v["key_hex"], v["name"]
        assert out["value_hex"] == v["value_hex"], v["name"]
        assert sorted(map(tuple, out["headers"])) == sorted(map(tuple, v["headers"])), v["name"]
        assert out["partition"] == v["partition_of_6"], v["name"]


def test_the_documented_example_command_builds_its_jobs(jar: Path) -> None:
    cmd = wv.example_command()
    assert cmd[:3] == ["java", "-jar", "target/jobstream-publisher.jar"]
    out = java(jar, *cmd[3:], "--dry-run", cwd=JAVA_DIR)
    assert [o["key_hex"] for o in out] == [f"o-{i}".encode().hex(" ") for i in range(10)]
    for o in out:
        h = dict(o["headers"])
        assert h[wire.JOB_TYPE] == "orders.confirmation" and h[wire.SCHEMA_VERSION] == "2"
        assert o["topic"] == "jobs.orders.confirmation"


def test_java_jobs_run_and_land_where_python_puts_their_keys(
    jar: Path, stack_factory: Any
) -> None:
    stack = worker_stack(stack_factory)
    v2 = publish(jar, stack, "--count", "100", "--payload", GOOD, "--key", "customer-{i}")
    v1 = publish(jar, stack, "--count", "20", "--payload", GOOD, "--schema-version", "1")
    python_ids = stack.publish_many(
        [({"seq": i, "customer": f"c-{i}", "amount_cents": i}, f"customer-{i}")
         for i in range(100)]
    )
    assert len(v2) == 100 and len(v1) == 20
    runs = {r["job_id"]: r for r in stack.wait_runs(220, timeout=90)}

    java_v2 = {o["job_id"]: o for o in v2}
    for jid, o in java_v2.items():
        run = runs[jid]
        assert run["attempt"] == 1 and run["partition"] == o["partition"]
        assert run["payload"]["note"] is None and run["payload"]["tags"] == []
    for o in v1:  # no --key: the job id is the key; v2's new fields take their defaults
        run = runs[o["job_id"]]
        assert o["key"] == o["job_id"] and run["key"] == o["job_id"]
        assert run["payload"] == {"seq": run["seq"], "customer": f"c-{run['seq']}",
                                  "amount_cents": run["seq"], "note": None, "tags": []}
        assert o["partition"] == wv.partition_for(o["key"].encode(), 6)

    java_part = {o["key"]: o["partition"] for o in v2}
    python_part = {runs[jid]["key"]: runs[jid]["partition"] for jid in python_ids}
    assert java_part == python_part, "Java's default partitioner and jobstream's disagree"
    assert java_part == {k: wv.partition_for(k.encode(), 6) for k in java_part}
    vector = wv.vectors()[0]
    assert java_part[vector["key"]] == vector["partition_of_6"]
    assert stack.read_topic(stack.topics.dlq, timeout=5) == []


def test_java_malformed_records_land_in_the_dlq_with_the_documented_category(
    jar: Path, stack_factory: Any
) -> None:
    stack = worker_stack(stack_factory)
    sent = {o["malformed"]: o for o in publish(jar, stack, "--malformed", "--payload", GOOD)}
    documented = wv.malformed_kinds()
    assert set(sent) == set(documented), "the Java example sends every kind the page lists"

    dead: dict[str, Any] = {}

    def all_dead() -> bool:
        for m in stack.read_topic(stack.topics.dlq, timeout=5):
            dead[m.key().decode()] = m
        return len(dead) >= len(sent)

    stack.wait_for(all_dead, 60, f"{len(sent)} dead letters")
    for kind, (category, fragments) in documented.items():
        m = dead[f"malformed-{kind}"]
        h = wire.decode_headers(m.headers())
        assert h[wire.ERROR_CATEGORY] == category, (kind, h[wire.ERROR_MESSAGE])
        assert any(f in h[wire.ERROR_MESSAGE] for f in fragments), (kind, h[wire.ERROR_MESSAGE])
        assert h[wire.ORIGIN_TOPIC] == stack.topics.main
        assert int(h[wire.ORIGIN_PARTITION]) == sent[kind]["partition"] == m.partition()
        assert int(h[wire.ORIGIN_OFFSET]) == sent[kind]["offset"]
    assert stack.runs() == [], "no malformed record ran"


def test_java_writes_the_cloudevents_vector(jar: Path) -> None:
    """`--cloudevents` (issue 27): the first CloudEvents vector of the page, byte for byte."""
    v = wce.vectors()[0]
    h = dict(v["headers"])
    (out,) = java(
        jar,
        "--dry-run", "--cloudevents", "--partitions", "6",
        "--job-type", wv.JOB_TYPE, "--schema-dir", str(TEST_SCHEMAS), "--topic", v["topic"],
        "--payload", json.dumps(v["decoded"]),
        "--key", wv.unhex(v["key_hex"]).decode(),
        "--job-id", h[ce.ID],
        "--traceparent", h[ce.TRACEPARENT],
        "--enqueued-at", str(v["job"]["enqueued_at_ms"]),
        "--source", h[ce.SOURCE],
    )
    assert out["key_hex"] == v["key_hex"]
    assert out["value_hex"] == v["value_hex"]
    assert sorted(map(tuple, out["headers"])) == sorted(map(tuple, v["headers"]))


def test_java_cloudevents_run_on_a_job_type_that_accepts_them(
    jar: Path, stack_factory: Any
) -> None:
    stack: Stack = stack_factory(
        job_type=wv.JOB_TYPE, job={"accept": ["jobstream", "cloudevents"]}
    )
    stack.start_worker("--app", "tests.apps.wire")
    sent = publish(jar, stack, "--cloudevents", "--count", "20", "--payload", GOOD,
                   "--key", "customer-{i}", "--schema-version", "1")
    runs = {r["job_id"]: r for r in stack.wait_runs(20, timeout=60)}
    for o in sent:
        run = runs[o["job_id"]]
        assert run["attempt"] == 1 and run["partition"] == o["partition"]
        assert run["trace_id"] is not None
        assert run["payload"]["note"] is None  # written with v1, read with v2
    assert stack.read_topic(stack.topics.dlq, timeout=3) == []
