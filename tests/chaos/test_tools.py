"""The chaos suite's own tools, without a broker: the runs-after-completion audit and the
connection-dropping proxy. A books check that cannot fail would prove nothing."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

from tests.chaos.proxy import FlakyProxy
from tests.support.harness import (
    free_port,
    pid_of_worker,
    recorded_completions,
    runs_after_completion,
)


def run(job: str, pid: int, attempt: int, start: float, end: float) -> dict[str, Any]:
    return {"job_id": job, "pid": pid, "attempt": attempt, "start": start, "end": end}


def entry(worker: str, attempt: int, finished_ms: int) -> dict[str, Any]:
    return {"status": "succeeded", "worker": worker, "attempt": attempt,
            "finished_at": finished_ms}


def test_pid_of_worker_allows_dashes_in_the_host() -> None:
    assert pid_of_worker("my-host-7-4242-ab12") == 4242
    assert pid_of_worker("garbage") is None


def test_a_run_after_a_recorded_completion_is_found() -> None:
    runs = [
        run("j", 10, 1, 100.0, 101.0),  # recorded below (worker pid 10)
        run("j", 20, 1, 100.5, 101.5),  # overlapped the recorded run: the crash window
        run("j", 30, 1, 103.0, 103.1),  # started after the recorded end: a dedup failure
        run("k", 40, 1, 100.0, 100.2),  # crashed before its record ...
        run("k", 41, 1, 105.0, 105.1),  # ... so this rerun is allowed
    ]
    ledger = [("j", entry("host-10-aaaa", 1, 101_200)), ("k", entry("h-41-bbbb", 1, 105_300))]
    assert recorded_completions(runs, ledger) == {"j": 101.0, "k": 105.1}
    assert runs_after_completion(runs, ledger) == [runs[2]]


def test_the_recorded_run_is_the_last_one_before_the_entry() -> None:
    """A worker that rewound after an aborted commit ran the job twice with the same attempt;
    the committed entry records the later run, so a run between the two is not a failure."""
    runs = [
        run("j", 10, 1, 100.0, 100.1),  # its commit aborted
        run("j", 20, 1, 100.5, 100.6),  # another process, in the crash window
        run("j", 10, 1, 101.0, 101.1),  # the rerun whose record was committed
    ]
    ledger = [("j", entry("h-10-aaaa", 1, 101_150))]
    assert runs_after_completion(runs, ledger) == []
    assert runs_after_completion([*runs, run("j", 20, 2, 101.2, 101.3)], ledger) != []


def test_the_proxy_forwards_and_drops_connections() -> None:
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen()

    def echo() -> None:
        conn, _ = upstream.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    proxy = FlakyProxy(free_port(), upstream.getsockname()[1])
    proxy.start()
    try:
        c = socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=5)
        c.sendall(b"ping")
        assert c.recv(4) == b"ping"
        deadline = time.monotonic() + 5
        while proxy.live == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.drop(1) == 1
        c.settimeout(5)
        try:
            got = c.recv(4)
        except ConnectionResetError:
            got = b""
        assert got == b""  # reset or closed: the client sees the connection die
        assert proxy.blackout(1.0) == 0
        refused = socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=5)
        refused.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert refused.recv(1) == b""
        assert proxy.refused == 1
    finally:
        proxy.stop()
        upstream.close()
