"""Scenario 7: network blips. Workers reach the (dedicated) broker through a loopback TCP proxy
that resets connections at random, and now and then refuses new ones for a moment, while jobs
are published at a steady rate. Each blip is shorter than the session timeout, so the workers
are expected to reconnect and go on: no worker exits and the books balance. (A worker that
exits anyway is recorded and replaced, so the books still show whether anything was lost.)"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from tests.chaos.books import (
    Fleet,
    Workload,
    balanced,
    conclude,
    sized,
    wait_quiescent,
)
from tests.chaos.conftest import Dedicated
from tests.chaos.test_broker_restart import Feed
from tests.support.harness import Stack

WORKERS = 2


class Blips(threading.Thread):
    """Every 0.3-1.5 s: reset one or two random connections; one time in eight, reset all of
    them and refuse new ones for 0.5-2 s instead."""

    def __init__(self, dedicated: Dedicated, seed: int) -> None:
        super().__init__(daemon=True, name="blips")
        self.proxy = dedicated.proxy
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.resets = 0
        self.blackouts = 0

    def run(self) -> None:
        while not self.halt.wait(self.rng.uniform(0.3, 1.5)):
            if self.rng.random() < 1 / 8:
                self.resets += self.proxy.blackout(self.rng.uniform(0.5, 2.0))
                self.blackouts += 1
            else:
                self.resets += self.proxy.drop(self.rng.choice((1, 2)))


def test_network_blips_workers_reconnect_and_books_balance(
    dedicated: Dedicated, dedicated_stack: Any
) -> None:
    duration = sized(20, 60, 120)
    rate = sized(100, 200, 250)
    stack: Stack = dedicated_stack(worker={"max_in_flight": 64})
    wl = Workload()
    fleet = Fleet(stack)
    for _ in range(WORKERS):
        fleet.start()
    started = time.monotonic()
    feed = Feed(stack, wl, rate)
    blips = Blips(dedicated, seed=7)
    feed.start()
    blips.start()
    try:
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            if fleet.check():  # recorded; replaced as Kubernetes would, to finish the books
                while len(fleet.alive()) < WORKERS:
                    fleet.start()
            time.sleep(0.5)
    finally:
        blips.halt.set()
        blips.join(10)
        feed.halt.set()
        feed.join(150)
    wl.ok = set(feed.ids)
    wl.published = len(feed.ids)
    while len(fleet.alive()) < WORKERS:
        fleet.start()
    quiet = wait_quiescent(stack, fleet, wl, timeout=sized(90, 180, 300))
    extra = [f"publishing failed: {feed.failed[:3]}"] if feed.failed else []
    books = conclude(
        "network_blips", stack, fleet, wl, started,
        {"connection_resets": blips.resets, "blackouts": blips.blackouts,
         "refused": dedicated.proxy.refused, "blip_s": duration},
        quiet, extra=extra,
    )
    assert blips.resets >= sized(10, 30, 60), f"only {blips.resets} connections reset"
    assert not books.violations, balanced(books)
