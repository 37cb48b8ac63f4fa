"""Metrics, health endpoints and lifecycle logs of a real worker process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import structlog
from prometheus_client import CollectorRegistry

from jobstream.config.logging import configure_logging
from jobstream.config.settings import LogSettings
from jobstream.consumers.health import Health, HealthServer
from jobstream.producers import Publisher
from jobstream.schemas import wire
from tests.support.harness import ROOT, Stack


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def _metric(body: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in body.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_match_what_happened(stack_factory) -> None:
    port = _free_port()
    stack: Stack = stack_factory(worker={"http_port": port}, job={"max_attempts": 2})
    jt = stack.job_type
    stack.publish_many([({"seq": i, "behaviour": "ok"}, f"k{i}") for i in range(20)])
    stack.publish_many(
        [
            ({"seq": 0, "behaviour": "fail_until:2"}, "r1"),
            ({"seq": 0, "behaviour": "fail_until:2"}, "r2"),
        ]
    )
    stack.publish_many([({"seq": 0, "behaviour": "permanent"}, "p1")])
    stack.publish_many([({"seq": i, "behaviour": "ok"}, "dup") for i in range(3)], job_id="dup-1")
    stack.start_worker()
    stack.wait_for(lambda: _get(port, "/readyz")[0] == 200, 60, "ready")
    want = {"succeeded": 23, "retried": 2, "dead_lettered": 1, "deduplicated": 2}

    def done() -> bool:
        body = _get(port, "/metrics")[1]
        return all(
            _metric(body, "jobstream_jobs_total", job_type=jt, outcome=o) >= n
            for o, n in want.items()
        )

    stack.wait_for(done, 60, f"metrics {want}")
    time.sleep(1)
    body = _get(port, "/metrics")[1]
    for outcome, n in want.items():
        assert _metric(body, "jobstream_jobs_total", job_type=jt, outcome=outcome) == n, outcome
    assert _metric(body, "jobstream_retries_total", job_type=jt, tier="1s") == 2
    assert (
        _metric(body, "jobstream_job_duration_seconds_count", job_type=jt) == 26
    )  # 23 ok + 3 failed runs
    assert _metric(body, "jobstream_job_latency_seconds_count", job_type=jt) >= 23
    assert _metric(body, "jobstream_rebalances_total") >= 1
    assert "jobstream_in_flight" in body and "jobstream_ledger_entries" in body
    stack.wait_for(lambda: "jobstream_consumer_lag{" in _get(port, "/metrics")[1], 15, "lag gauge")
    assert _get(port, "/healthz")[0] == 200


def test_lifecycle_logs_carry_one_trace_id(stack_factory) -> None:
    stack: Stack = stack_factory(job={"max_attempts": 2})
    [jid] = stack.publish_many([({"seq": 0, "behaviour": "fail_until:9"}, "t")])
    stack.start_worker(JOBSTREAM_LOG__LEVEL="DEBUG")  # `received` and `started` are DEBUG
    log = stack.tmp / "worker-0.log"
    stack.wait_for(lambda: '"dead_lettered"' in log.read_text(), 60, "dead letter")
    events = [json.loads(line) for line in log.read_text().splitlines() if jid in line]
    steps = [e["event"] for e in events]
    for step in ("received", "started", "failed", "retried", "dead_lettered"):
        assert step in steps, steps
    assert len({e["trace_id"] for e in events}) == 1 and events[0]["trace_id"]
    for e in events:
        assert {"job_id", "job_type", "attempt", "topic", "partition", "offset"} <= e.keys()


def _events_of(path, job_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    out = []
    for line in path.read_text().splitlines():
        if job_id in line and line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_one_trace_id_from_publish_through_retry_dlq_replay_to_success(stack_factory) -> None:
    stack: Stack = stack_factory(job={"max_attempts": 2})
    debug = LogSettings(level="DEBUG", format="json")
    pub_log = stack.tmp / "publisher.log"
    with pub_log.open("w") as f:
        configure_logging(debug, stream=f)  # as a service would set up its own logging
        try:
            with Publisher(stack.settings.model_copy(update={"log": debug})) as pub:
                jid = pub.publish(stack.job_type, {"seq": 0, "behaviour": "transient"}, key="t")
        finally:
            structlog.reset_defaults()
    stack.start_worker(log_name="broken.log", JOBSTREAM_LOG__LEVEL="DEBUG")  # received, started
    broken = stack.tmp / "broken.log"
    stack.wait_for(lambda: '"dead_lettered"' in broken.read_text(), 60, "the dead letter")
    assert stack.stop_all() == [0]
    stack.procs.clear()

    stack.start_worker(log_name="fixed.log", JOBSTREAM_TEST_FIXED="1", JOBSTREAM_LOG__LEVEL="DEBUG")
    replay = subprocess.run(
        [sys.executable, "-m", "jobstream", "dlq", "replay", stack.job_type, "--yes"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env=stack.env(JOBSTREAM_LOG__LEVEL="DEBUG", JOBSTREAM_LOG__FORMAT="json"),
    )
    assert replay.returncode == 0, replay.stderr
    [run] = stack.wait_runs(1, timeout=60)
    fixed = stack.tmp / "fixed.log"
    stack.wait_for(lambda: '"succeeded"' in fixed.read_text(), 30, "the success event")
    assert stack.stop_all() == [0]

    replay_log = stack.tmp / "replay.log"
    replay_log.write_text(replay.stderr)
    events = [e for p in (pub_log, broken, replay_log, fixed) for e in _events_of(p, jid)]
    steps = [e["event"] for e in events]
    expected = ["published", "received", "started", "failed", "retried",  # attempt 1
                "received", "started", "failed", "dead_lettered",  # attempt 2, from the tier
                "replayed", "received", "deduplicated_or_started", "succeeded"]
    it = iter(steps)
    for step in expected:
        choices = {"deduplicated", "started"} if step == "deduplicated_or_started" else {step}
        assert any(s in choices for s in it), f"{step} missing or out of order in {steps}"
    assert "deduplicated" not in steps
    trace_ids = {e.get("trace_id") for e in events}
    assert trace_ids == {run["trace_id"]} and run["trace_id"], trace_ids
    assert [e["attempt"] for e in events if e["event"] == "succeeded"] == [1]  # reset on replay


def test_readyz_false_before_assignment_and_healthz_detects_a_stuck_loop() -> None:
    health = Health(stall_after_s=0.5)
    server = HealthServer("127.0.0.1", 0, health, CollectorRegistry())
    server.start()
    try:
        assert _get(server.port, "/readyz")[0] == 503
        assert _get(server.port, "/healthz")[0] == 200
        health.ready = True
        assert _get(server.port, "/readyz")[0] == 200
        time.sleep(0.8)  # no beat: the poll loop is stuck
        code, body = _get(server.port, "/healthz")
        assert code == 503 and "stalled" in body
        assert _get(server.port, "/readyz")[0] == 503
        health.beat()
        assert _get(server.port, "/healthz")[0] == 200
    finally:
        server.stop()


def test_worker_readyz_turns_true_after_assignment(stack_factory) -> None:
    port = _free_port()
    stack: Stack = stack_factory(worker={"http_port": port})
    stack.start_worker()
    seen = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        code, _ = _get(port, "/readyz")
        if code:
            seen.add(code)
        if code == 200:
            break
        time.sleep(0.05)
    assert 200 in seen


def test_handler_spans_continue_the_published_trace(stack_factory) -> None:
    stack: Stack = stack_factory(job={"max_attempts": 2})
    spans_file = stack.tmp / "spans.jsonl"
    with stack.publisher() as pub:
        ok = pub.publish(stack.job_type, {"seq": 0, "behaviour": "ok"}, key="a")
        bad = pub.publish(stack.job_type, {"seq": 1, "behaviour": "permanent"}, key="b")
    published = {
        wire.decode_headers(m.headers())[wire.JOB_ID]:
            wire.decode_headers(m.headers())[wire.TRACEPARENT].split("-")
        for m in stack.read_topic(stack.topics.main)
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobstream", "worker", "--app", "tests.apps.traced",
         "--job-type", stack.job_type],
        env=stack.env(JOBSTREAM_TEST_SPANS=str(spans_file)), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=(stack.tmp / "traced.log").open("wb"),
    )
    stack.procs.append(proc)

    def spans() -> list[dict]:  # type: ignore[type-arg]
        if not spans_file.exists():
            return []
        return [json.loads(x) for x in spans_file.read_text().splitlines()]

    stack.wait_for(lambda: len(spans()) >= 2, 60, "two handler spans")
    by_job = {s["attributes"]["jobstream.job_id"]: s for s in spans()}
    for jid, status in ((ok, "UNSET"), (bad, "ERROR")):
        s = by_job[jid]
        _, trace_id, span_id, _ = published[jid]
        assert (s["trace_id"], s["parent_span_id"], s["status"]) == (trace_id, span_id, status)
        assert s["name"] == f"{stack.job_type} process"
        assert s["attributes"]["messaging.destination.name"] == stack.topics.main
    assert stack.stop_all() == [0]
