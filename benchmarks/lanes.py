"""Priority lanes (docs/priorities.md): how long a `high` job waits behind a `low` backlog, and
the shares of starts when every lane has work. Real broker, one worker process (tests/apps/
sink.py: each run's start time goes to its sink).

    .venv/bin/python -m benchmarks.lanes --low 100000 --high 1000 --rate 50 --shares 40000

Latency: LOW jobs queued in the `low` lane, one worker started on them, then HIGH jobs
published at RATE/s in `high`; per high job its start minus its publish. Printed next to the
same run without lanes (every job on T, the high ones behind the backlog of their partition).
Shares: SHARES jobs in each of high, default, low; the starts per lane over WINDOW seconds
against the weights 8:3:1. Fair sharing (--fair BIG): see fair().
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import Bench, Row, percentile, say
from tests.support.harness import Stack, make_stack

LANES = ["high", "default", "low"]


class Tail:
    """New lines of a worker's sink, read incrementally (the sink grows by 100,000s)."""

    def __init__(self, path: Path) -> None:
        self.path, self.pos = path, 0
        self.runs: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return self.runs
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        whole = data[: data.rfind(b"\n") + 1]
        self.pos += len(whole)
        self.runs += [json.loads(line) for line in whole.splitlines() if line.strip()]
        return self.runs


def _stack(tmp: Path, bootstrap: str, lanes: bool, in_flight: int) -> Stack:
    job: dict[str, Any] = {"partitions": 6, "timeout_s": 30}
    if lanes:
        job["priorities"] = LANES
    return make_stack(tmp, bootstrap, uuid.uuid4().hex[:8], job=job,
                      worker={"max_in_flight": in_flight, "max_buffered": 1000})


def _fill(stack: Stack, n: int, lane: str | None, behaviour: str, prefix: str) -> None:
    kw = {"priority": lane} if lane else {}
    for start in range(0, n, 20_000):
        stack.publish_many([({"seq": i, "behaviour": behaviour}, f"{prefix}{i}")
                            for i in range(start, min(n, start + 20_000))], **kw)


def _wait(tail: Tail, pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred(tail.poll()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def latency(tmp: Path, a: argparse.Namespace, lanes: bool) -> dict[str, float]:
    stack = _stack(tmp, a.bootstrap, lanes, a.in_flight)
    behaviour = f"sleep_ms:{a.handler_ms}"
    try:
        _fill(stack, max(1, a.low), "low" if lanes else None, behaviour, "l")
        tail = Tail(stack.sink)
        stack.start_worker()
        _wait(tail, lambda r: len(r) >= min(1000, max(1, a.low)), 120,
              "the worker to start on the backlog")
        sent: dict[str, float] = {}
        t0 = time.monotonic()
        with stack.publisher() as pub:
            for i in range(a.high):
                delay = t0 + i / a.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                key = f"h{i}"
                sent[key] = time.time()
                pub.publish_async(stack.job_type, {"seq": 10_000_000 + i, "behaviour": behaviour},
                                  key=key, **({"priority": "high"} if lanes else {}))
                pub.producer.poll(0)
        _wait(tail, lambda r: sum(1 for x in r if x["key"] in sent) >= a.high,
              a.timeout, "every high job to start")
        runs = tail.poll()
        waits = [(r["start"] - sent[r["key"]]) * 1000 for r in runs if r["key"] in sent]
        low_left = a.low - len({r["key"] for r in runs if r["key"] not in sent})
        return {"p50": percentile(waits, 50), "p99": percentile(waits, 99),
                "max": max(waits), "low_left": low_left}
    finally:
        stack.stop_all(timeout=30)
        stack.delete_topics()


def shares(tmp: Path, a: argparse.Namespace) -> dict[str, float]:
    """Each lane's share of the starts over the window, and the worst lane's distance from its
    weight as a fraction of that weight; printed as it goes."""
    stack = _stack(tmp, a.bootstrap, True, a.in_flight)
    behaviour = f"sleep_ms:{a.handler_ms}"
    try:
        for lane in LANES:
            _fill(stack, a.shares, lane, behaviour, lane[0])
        tail = Tail(stack.sink)
        stack.start_worker()
        _wait(tail, lambda r: len(r) >= 500, 120, "the worker to start")
        time.sleep(2)  # warmed up
        lo, hi = time.time(), time.time() + a.window
        time.sleep(a.window + 1)
        runs = tail.poll()
        window = [r for r in runs if lo <= r["start"] < hi]
        lane_of = {f"{stack.topics.main}.priority.{n}": n for n in LANES}
        got = Counter(lane_of.get(r["topic"], "default") for r in window)
        total = sum(got.values())
        weights = dict(zip(LANES, (8, 3, 1), strict=True))
        say(f"shares over {a.window:g} s, all three lanes backlogged ({total:,} starts, "
            f"{total / a.window:,.0f}/s):")
        for n in LANES:
            want = weights[n] / 12
            share = got[n] / max(1, total)
            say(f"  {n:8s} {got[n]:7,} starts  share {share:6.1%}  weight {want:6.1%}  "
                f"off by {abs(share - want) / want:5.1%} of it")
        out = {n: got[n] / max(1, total) for n in LANES}
        out["worst_off"] = max(abs(out[n] - weights[n] / 12) / (weights[n] / 12) for n in LANES)
        out["rate"] = total / a.window
        return out
    finally:
        stack.stop_all(timeout=30)
        stack.delete_topics()


def fair(tmp: Path, a: argparse.Namespace, on: bool) -> dict[str, float]:
    """One partition: BIG jobs of one tenant and SMALL tenants x 10 jobs at random places among
    them, all queued, a buffer deep enough to fetch them all; per small job, its end minus the
    worker's first start."""
    import random

    job: dict[str, Any] = {"partitions": 1, "timeout_s": 30}
    if on:
        job["fair_by"] = "header:tenant"
    n = a.fair + a.small * 10
    stack = make_stack(tmp, a.bootstrap, uuid.uuid4().hex[:8], job=job,
                       worker={"max_in_flight": a.in_flight, "max_buffered": n})
    behaviour = f"sleep_ms:{a.handler_ms}"
    tenants = ["big"] * a.fair + [f"t{i}" for i in range(a.small) for _ in range(10)]
    random.Random(1).shuffle(tenants)
    try:
        with stack.publisher() as pub:
            for i, t in enumerate(tenants):
                pub.publish_async(stack.job_type, {"seq": i, "behaviour": behaviour},
                                  key=f"{t}-{i}", headers={"tenant": t})
                if i % 1000 == 0:
                    pub.producer.poll(0)
        tail = Tail(stack.sink)
        stack.start_worker()
        _wait(tail, lambda r: sum(1 for x in r if not x["key"].startswith("big")) >= a.small * 10,
              a.timeout, "every small tenant's job")
        runs = tail.poll()
        first = min(r["start"] for r in runs)
        small = [(r["end"] - first) * 1000 for r in runs if not r["key"].startswith("big")]
        return {"p50": percentile(small, 50), "p99": percentile(small, 99), "max": max(small)}
    finally:
        stack.stop_all(timeout=30)
        stack.delete_topics()


def bench(b: Bench) -> list[Row]:
    """Bench 11 in benchmarks/run.py: the issue's sizes in a full run."""
    a = argparse.Namespace(
        bootstrap=b.bootstrap, low=b.size(100_000, 5_000), high=b.size(1000, 100), rate=50.0,
        handler_ms=50, in_flight=64, timeout=600.0, shares=b.size(40_000, 3_000),
        window=b.size(30, 5), fair=b.size(50_000, 2_000), small=20)
    tmp = b.tmp / "lanes"
    tmp.mkdir(parents=True, exist_ok=True)
    with_lanes, without = latency(tmp, a, True), latency(tmp, a, False)
    target = 100 + a.handler_ms
    say(f"lanes: high p99 {with_lanes['p99']:,.0f} ms with lanes, {without['p99']:,.0f} ms "
        f"without")
    sh = shares(tmp, a)
    fair_on, fifo = fair(tmp, a, True), fair(tmp, a, False)
    setup = (f"{a.low:,} low queued, {a.high:,} high at {a.rate:g}/s, {a.handler_ms} ms "
             f"handlers, max_in_flight {a.in_flight}")
    return [
        Row("11 lanes", "high enqueue->start p99 behind a low backlog", with_lanes["p99"], "ms",
            without["p99"], "the same without lanes", with_lanes["p99"] / without["p99"],
            f"<= {target} ms", with_lanes["p99"] <= target,
            f"{setup}; p50 {with_lanes['p50']:,.0f} ms, max {with_lanes['max']:,.0f} ms"),
        Row("11 lanes", "starts' distance from the weights 8:3:1, worst lane",
            sh["worst_off"] * 100, "%", target="<= 10 %", passed=sh["worst_off"] <= 0.10,
            note=f"{a.shares:,} jobs queued per lane, {a.window:g} s window, "
                 + ", ".join(f"{n} {sh[n]:.1%}" for n in LANES)),
        Row("11 lanes", "small tenants' jobs finished, p99 (fair_by)", fair_on["p99"], "ms",
            fifo["p99"], "first in first out", fair_on["p99"] / fifo["p99"], "<= 2000 ms",
            fair_on["p99"] <= 2000,
            f"{a.small} tenants x 10 jobs among {a.fair:,} of one tenant, one partition"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--low", type=int, default=100_000)
    ap.add_argument("--high", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=50.0, help="high jobs published per second")
    ap.add_argument("--handler-ms", type=int, default=50)
    ap.add_argument("--in-flight", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--shares", type=int, default=0, help="jobs per lane for the shares run")
    ap.add_argument("--window", type=float, default=30.0)
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--fair", type=int, default=0, help="jobs of the big tenant (fair run)")
    ap.add_argument("--small", type=int, default=20, help="small tenants of 10 jobs each")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-lanes-"))
    if a.high:
        res = {"lanes": latency(tmp, a, True)}
        if not a.skip_baseline:
            res["no lanes"] = latency(tmp, a, False)
        say(f"high enqueue->start with {a.low:,} low queued, {a.high:,} high at "
            f"{a.rate:g}/s, handler {a.handler_ms} ms, max_in_flight {a.in_flight}:")
        for name, r in res.items():
            say(f"  {name:9s} p50 {r['p50']:8.0f} ms  p99 {r['p99']:8.0f} ms  "
                f"max {r['max']:8.0f} ms  (low jobs not yet started at the end: "
                f"{r['low_left']:,.0f})")
        say(f"  target: p99 <= 100 ms + one handler ({100 + a.handler_ms} ms) with lanes")
    if a.shares:
        shares(tmp, a)
    if a.fair:
        got = {"fair_by": fair(tmp, a, True)}
        if not a.skip_baseline:
            got["first in first out"] = fair(tmp, a, False)
        say(f"{a.small} small tenants x 10 jobs among {a.fair:,} of one big tenant, one "
            f"partition, all queued; small jobs' end after the worker's first start:")
        for name, r in got.items():
            say(f"  {name:18s} p50 {r['p50']:8.0f} ms  p99 {r['p99']:8.0f} ms  "
                f"max {r['max']:8.0f} ms")


if __name__ == "__main__":
    main()
