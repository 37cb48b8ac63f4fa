"""Workflows: the cost of `ctx.enqueue` per child next to a plain `publish_async`, on a real
broker.

    .venv/bin/python -m benchmarks.workflows --bootstrap 127.0.0.1:9092 --calls 50000 \\
        --parents 2000 --children 10

1. Per call, on the calling thread: `Children.add` (what ctx.enqueue runs: validate, encode,
   derive the id, build the record; the produce happens later, on the poll thread) next to
   `Publisher.publish_async` (validate, encode, hand to librdkafka), same payloads; then the
   poll thread's share, producing the collected children (`send_children`).
2. End to end, one worker process (tests/apps/flows.py): P parents enqueueing K children each
   against P*(K+1) jobs published directly, each run to the last handler: jobs per second.
In `make bench` as bench 12 (`--only workflows`, bench() below) at these sizes.

3. Batches (--batches B --members M, tests/apps/batches.py, one worker): B batches of M members
   published one after another; per batch, the callback latency from its last member's handler
   finished to its callback's handler started (p50, p99, max), and the publish time.

    .venv/bin/python -m benchmarks.workflows --bootstrap 127.0.0.1:9092 --calls 0 \\
        --parents 0 --batches 30 --members 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import Bench, Row, say
from jobstream.consumers.runtime.children import Children, Countdown, send_children
from tests.support.harness import Stack, make_stack


def per_call(stack: Stack, calls: int) -> dict[str, float]:
    payloads = [{"seq": i, "behaviour": "ok"} for i in range(calls)]
    with stack.publisher() as pub:
        pub.publish(stack.job_type, payloads[0])  # metadata and connections warm
        t0 = time.perf_counter()
        for p in payloads:
            pub.publish_async(stack.job_type, p, key=f"k{p['seq'] % 500}")
        publish_us = (time.perf_counter() - t0) / calls * 1e6
        pub.flush(60)
        hdrs = {"traceparent": f"00-{'a' * 32}-{'b' * 16}-01"}
        records, took = [], 0.0
        for start in range(0, calls, 1000):  # parents of 1,000 children each
            kids = Children(f"{start:032x}", hdrs, lambda: pub)
            t0 = time.perf_counter()
            for p in payloads[start:start + 1000]:
                kids.add(stack.job_type, p, key=f"k{p['seq'] % 500}")
            took += time.perf_counter() - t0
            records += kids.take()
        enqueue_us = took / calls * 1e6

        class _Interval:  # what send_children needs of the worker's interval
            publisher = pub

            def break_(self, reason: str) -> None:
                raise RuntimeError(reason)

        gate = Countdown(len(records) + 1)
        t0 = time.perf_counter()
        send_children(_Interval(), records, gate)
        produce_us = (time.perf_counter() - t0) / calls * 1e6
        pub.flush(60)
    say(f"per call ({calls:,}): publish_async {publish_us:.1f} us; ctx.enqueue "
        f"{enqueue_us:.1f} us on the handler thread + {produce_us:.1f} us producing on the "
        f"poll thread = {enqueue_us + produce_us:.1f} us "
        f"({(enqueue_us + produce_us) / publish_us:.2f} x publish_async)")
    return {"publish_us": publish_us, "enqueue_us": enqueue_us, "produce_us": produce_us}


def _run(stack: Stack, n: int, publish: Any, timeout: float = 600) -> float:
    """Seconds from publishing until n distinct jobs ran, one worker."""
    proc = stack.spawn_worker("tests.apps.flows", (), stack.tmp / "worker.log", stack.env(),
                              False)
    try:
        time.sleep(4)  # joined and assigned before the clock starts
        t0 = time.monotonic()
        publish()
        stack.wait_for(lambda: len({r["job_id"] for r in stack.runs()}) >= n, timeout,
                       f"{n} jobs run")
        return time.monotonic() - t0
    finally:
        proc.terminate()
        proc.wait(60)


def end_to_end(tmp: Path, bootstrap: str, parents: int, children: int) -> dict[str, float]:
    total = parents * (children + 1)
    flows = make_stack(tmp, bootstrap, uuid.uuid4().hex[:8], worker={"max_in_flight": 64})
    took_flows = _run(flows, total, lambda: flows.publish_many(
        [({"seq": i + 1, "behaviour": f"parent:{children}:ok:0"}, f"p{i % 500}")
         for i in range(parents)]))
    plain = make_stack(tmp, bootstrap, uuid.uuid4().hex[:8], worker={"max_in_flight": 64})
    took_plain = _run(plain, total, lambda: plain.publish_many(
        [({"seq": i, "behaviour": "ok"}, f"p{i % 500}") for i in range(total)]))
    for s in (flows, plain):
        s.delete_topics()
    say(f"end to end ({parents:,} parents x {children} children = {total:,} jobs, one "
        f"worker): via ctx.enqueue {total / took_flows:,.0f} jobs/s ({took_flows:.1f} s); "
        f"all published directly {total / took_plain:,.0f} jobs/s ({took_plain:.1f} s)")
    return {"flows": total / took_flows, "plain": total / took_plain, "jobs": total}


def batches(tmp: Path, bootstrap: str, n: int, members: int) -> dict[str, float]:
    jt = "test.batch"
    stack = make_stack(tmp, bootstrap, uuid.uuid4().hex[:8], job_type=jt,
                       worker={"max_in_flight": 64})
    proc = stack.spawn_worker("tests.apps.batches", (), stack.tmp / "worker.log", stack.env(),
                              False)
    lat: list[float] = []
    pub_s: list[float] = []
    try:
        time.sleep(5)  # joined, assigned and restored before the clock starts
        with stack.publisher() as pub:
            for b in range(n):
                t0 = time.monotonic()
                bid = pub.batch(jt, [{"seq": i} for i in range(members)],
                                on_complete=(jt, {"seq": -1, "behaviour": "callback"}))
                pub_s.append(time.monotonic() - t0)

                def called(bid: str = bid) -> bool:
                    return any(r["behaviour"] == "callback" and r["batch_id"] == bid
                               for r in stack.runs())

                stack.wait_for(called, 120, f"batch {b}'s callback")
                runs = [r for r in stack.runs() if r["batch"] == bid or (
                    r["behaviour"] == "callback" and r["batch_id"] == bid)]
                last = max(r["end"] for r in runs if r["behaviour"] != "callback")
                cb = min(r["start"] for r in runs if r["behaviour"] == "callback")
                lat.append(cb - last)
    finally:
        proc.terminate()
        proc.wait(60)
        stack.delete_topics()
    lat.sort()

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    say(f"batches ({n} x {members:,} members, one worker): callback latency (last member "
        f"finished -> callback started) p50 {q(0.5):.0f} ms, p99 {q(0.99):.0f} ms, max "
        f"{lat[-1] * 1000:.0f} ms; publishing a batch {sorted(pub_s)[len(pub_s) // 2]:.2f} s "
        "(median)")
    return {"p50": q(0.5), "p99": q(0.99), "max": lat[-1] * 1000,
            "publish_s": sorted(pub_s)[len(pub_s) // 2]}


def bench(b: Bench) -> list[Row]:
    """Bench 12 in benchmarks/run.py: ctx.enqueue next to publish_async, a workflow's jobs/s
    next to the same jobs published directly, and a 1,000-member batch's callback latency."""
    tmp = b.tmp / "workflows"
    tmp.mkdir(parents=True, exist_ok=True)
    calls, parents, n, members = (b.size(50_000, 5_000), b.size(2_000, 200), b.size(30, 5),
                                  b.size(1_000, 200))
    stack = make_stack(tmp, b.bootstrap, uuid.uuid4().hex[:8])
    try:
        c = per_call(stack, calls)
    finally:
        stack.delete_topics()
    e = end_to_end(tmp, b.bootstrap, parents, 10)
    bt = batches(tmp, b.bootstrap, n, members)
    child_us = c["enqueue_us"] + c["produce_us"]
    return [
        Row("12 workflows", "ctx.enqueue per child (handler + poll thread)", child_us, "us",
            c["publish_us"], "publish_async", child_us / c["publish_us"],
            note=f"{calls:,} calls; {c['enqueue_us']:.1f} us on the handler thread + "
                 f"{c['produce_us']:.1f} us producing on the poll thread"),
        Row("12 workflows", "parents enqueueing 10 children each, one worker", e["flows"],
            "jobs/s", e["plain"], "the same jobs published directly", e["flows"] / e["plain"],
            note=f"{parents:,} parents, {int(e['jobs']):,} jobs"),
        Row("12 workflows", f"batch callback latency p99 ({members:,} members)", bt["p99"],
            "ms", note=f"{n} batches one after another, one worker; last member finished -> "
                       f"callback started; p50 {bt['p50']:,.0f} ms, max {bt['max']:,.0f} ms; "
                       f"publishing a batch {bt['publish_s']:.2f} s (median)"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--calls", type=int, default=50_000)
    ap.add_argument("--parents", type=int, default=2_000)
    ap.add_argument("--children", type=int, default=10)
    ap.add_argument("--batches", type=int, default=30, help="0: no batch benchmark")
    ap.add_argument("--members", type=int, default=1_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-workflows-"))
    if args.calls:
        stack = make_stack(tmp, args.bootstrap, uuid.uuid4().hex[:8])
        per_call(stack, args.calls)
        stack.delete_topics()
    if args.parents:
        end_to_end(tmp, args.bootstrap, args.parents, args.children)
    if args.batches:
        batches(tmp, args.bootstrap, args.batches, args.members)


if __name__ == "__main__":
    main()
