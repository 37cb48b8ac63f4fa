"""Scenario 2: the broker stops and starts again in the middle of a run (jobs are published
before, during and after the outage). The workers ride it out without a restart; their
readiness (/readyz) drops while the broker is away and comes back."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from typing import Any

from tests.chaos.books import (
    Fleet,
    SinkTail,
    Workload,
    balanced,
    conclude,
    sized,
    wait_quiescent,
)
from tests.chaos.conftest import Dedicated
from tests.support.harness import Stack, free_port

WORKERS = 2


class Readiness(threading.Thread):
    """Polls a worker's /readyz every 0.2 s and keeps every (time, status) change."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True, name=f"readyz-{port}")
        self.port = port
        self.changes: list[tuple[float, int]] = []
        self.halt = threading.Event()

    def status(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            return 0  # not listening (yet)

    def run(self) -> None:
        while not self.halt.is_set():
            code = self.status()
            if not self.changes or self.changes[-1][1] != code:
                self.changes.append((time.time(), code))
            self.halt.wait(0.2)

    def code_at(self, t: float) -> int:
        code = 0
        for at, c in self.changes:
            if at > t:
                break
            code = c
        return code

    def dropped_between(self, t0: float, t1: float) -> bool:
        return self.code_at(t0) != 200 or any(c != 200 for at, c in self.changes if t0 <= at <= t1)


class Feed(threading.Thread):
    """Publishes ok jobs at a steady rate until stopped, through one long-lived publisher
    (its topic-size cache is warm, so publishing goes on while the broker is away)."""

    def __init__(self, stack: Stack, wl: Workload, rate: float) -> None:
        super().__init__(daemon=True, name="feed")
        self.stack, self.wl, self.rate = stack, wl, rate
        self.halt = threading.Event()
        self.failed: list[str] = []
        self.ids: list[str] = []

    def run(self) -> None:
        with self.stack.publisher() as pub:
            i = 0
            t0 = time.monotonic()
            while not self.halt.is_set():
                if i >= (time.monotonic() - t0) * self.rate:
                    self.halt.wait(0.01)
                    continue

                def done(err: Any, _msg: Any, i: int = i) -> None:
                    if err is not None:
                        self.failed.append(f"job {i}: {err}")

                jid = pub.publish_async(
                    self.stack.job_type, {"seq": i, "behaviour": "ok"}, key=f"k{i % 300}",
                    on_delivery=done,
                )
                self.ids.append(jid)
                i += 1
            pub.flush(120)


def test_broker_restart_workers_recover_without_restarting(
    dedicated: Dedicated, dedicated_stack: Any
) -> None:
    restarts = sized(1, 1, 2)
    rate = sized(100, 200, 300)
    stack: Stack = dedicated_stack()
    wl = Workload()
    ports = [free_port() for _ in range(WORKERS)]
    fleet = Fleet(stack)
    serving = {port: fleet.start(JOBSTREAM_WORKER__HTTP_PORT=str(port)) for port in ports}
    pids = {p.pid for p in fleet.alive()}

    def replace_dead() -> None:
        """A worker that died (recorded by the fleet) is replaced on its port, as Kubernetes
        would, so the books can still be drawn up; the scenario fails on it all the same."""
        for port, proc in serving.items():
            if proc.poll() is not None:
                fleet.check()
                serving[port] = fleet.start(JOBSTREAM_WORKER__HTTP_PORT=str(port))

    watchers = [Readiness(port) for port in ports]
    for w in watchers:
        w.start()

    def all_ready() -> bool:
        replace_dead()
        return all(w.status() == 200 for w in watchers)

    started = time.monotonic()
    feed = Feed(stack, wl, rate)
    feed.start()
    sink = SinkTail(stack)
    outages: list[tuple[float, float]] = []
    try:
        fleet.wait(all_ready, 60, "workers ready")
        for _ in range(restarts):
            fleet.wait(lambda: sink.poll() >= rate * 3, 60, "jobs flowing")
            before = sink.poll()
            t_stop = time.time()
            dedicated.broker.stop()
            time.sleep(sized(3, 5, 8))  # down: the feed keeps publishing into its queue
            dedicated.broker.start()
            t_up = time.time()
            outages.append((t_stop, t_up))
            # Recovered: ready again and jobs published during the outage run.
            fleet.wait(all_ready, 120, "ready again")
            after = before + rate * 3

            def flowing(after: float = after) -> bool:
                replace_dead()
                return sink.poll() >= after

            fleet.wait(flowing, 90, "jobs after it")
        time.sleep(sized(3, 5, 10))
    finally:
        feed.halt.set()
        feed.join(150)
    wl.ok = set(feed.ids)
    wl.published = len(feed.ids)
    replace_dead()
    quiet = wait_quiescent(stack, fleet, wl, timeout=sized(90, 180, 300))
    extra = [f"publishing failed: {feed.failed[:3]}"] if feed.failed else []
    replaced = [p.pid for p in stack.procs if p.pid not in pids]
    if replaced:
        extra.append(f"{len(replaced)} workers did not ride out the outage and were replaced")
    for w in watchers:
        w.halt.set()
        for t_stop, t_up in outages:
            if not w.dropped_between(t_stop, t_up + 30):
                extra.append(f"worker on :{w.port}: /readyz stayed 200 through the outage "
                             f"({t_stop:.1f}-{t_up:.1f}); changes: {w.changes}")
        if w.changes[-1][1] != 200:
            extra.append(f"worker on :{w.port}: not ready at the end: {w.changes[-3:]}")
    books = conclude(
        "broker_restart", stack, fleet, wl, started,
        {"broker_restarts": len(outages),
         "outage_s": [round(up - down, 1) for down, up in outages]},
        quiet, extra=extra,
    )
    assert not books.violations, balanced(books)

