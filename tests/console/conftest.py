"""Fixtures of the console tests: one real Chromium per module, and the scenario the browser
tests check figures against (jobs succeeded, retried and dead-lettered by a real worker)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.console.support import add_ui_settings, browser, console_server, free_port_from
from tests.support.harness import Stack, make_stack

WORKER_PORTS = range(8415, 8418)  # the worker's /metrics, scraped by the console (ui.workers)
N_OK, N_RETRIED, N_DEAD = 5, 3, 4


@dataclass
class Scenario:
    stack: Stack
    url: str
    dead_ids: list[str]
    dead_keys: list[str]
    worker_port: int


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    d = browser()
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, bootstrap: str) -> Iterator[Scenario]:
    unique = uuid.uuid4().hex[:8]
    port = free_port_from(WORKER_PORTS)
    stack = make_stack(tmp_path_factory.mktemp("console"), bootstrap, unique,
                       job={"partitions": 3, "retry_tiers": ["1s"], "max_attempts": 3},
                       worker={"http_port": port})
    add_ui_settings(stack, workers=[f"http://127.0.0.1:{port}/metrics"])
    ok = [({"seq": i, "behaviour": "ok", "secret": f"ok-{i}"}, f"ok-{i}") for i in range(N_OK)]
    retried = [({"seq": i, "behaviour": "fail_until:2", "secret": f"r-{i}"}, f"retry-{i}")
               for i in range(N_RETRIED)]
    dead_keys = [f"dead-{i}" for i in range(N_DEAD)]
    dead = [({"seq": i, "behaviour": "permanent:<script>window.__xss=1</script>",
              "secret": f"hunter2-{i}"}, k) for i, k in enumerate(dead_keys)]
    stack.publish_many(ok + retried)
    dead_ids = stack.publish_many(dead)
    stack.start_worker()
    try:
        stack.wait_runs(N_OK + N_RETRIED, timeout=90)
        stack.wait_for(lambda: len(stack.read_topic(stack.topics.dlq)) == N_DEAD, 60,
                       f"{N_DEAD} dead letters")
        with console_server(stack, free_port_from(range(8410, 8412))) as url:
            yield Scenario(stack, url, dead_ids, dead_keys, port)
    finally:
        stack.stop_all()
        stack.delete_topics()
