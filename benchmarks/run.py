"""jobstream benchmarks, side by side with the raw client, in one run on one broker.

    make bench                      # full sizes (about 10 minutes on 2 cores)
    make bench ARGS=--quick         # small counts: a smoke run in about 2 minutes
    .venv/bin/python -m benchmarks.run --only overhead --only latency

Prints a table (measured, baseline, ratio, target, pass/miss) and writes JSON: the full run
to benchmarks/results/latest.json, --quick or --only runs to benchmarks/results/partial.json
(or --out). A missed target is a finding, not a failure: the exit code is 0 unless a benchmark
could not run at all.

The broker: --bootstrap, else JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS, else JOBSTREAM_TEST_BOOTSTRAP,
else the local broker of `jobstream broker start` (127.0.0.1:JOBSTREAM_BROKER__PORT).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import confluent_kafka

from benchmarks import (
    costs,
    delayed,
    lanes,
    latency,
    ledger,
    lookup,
    publisher,
    retry,
    throughput,
    workflows,
)
from benchmarks.common import PY_SPY, ROOT, Bench, Row, say, scratch_dir
from benchmarks.figures import fmt
from jobstream.config.settings import load_settings

RESULTS = ROOT / "benchmarks" / "results"

# In run order: latency uses the max rates measured by overhead, costs its per-job time.
BENCHMARKS: dict[str, tuple[str, Callable[[Bench], list[Row]]]] = {
    "overhead": ("1 worker overhead vs a raw confluent-kafka loop", throughput.overhead),
    "io": ("2 I/O-bound handlers vs the ideal rate", throughput.io_bound),
    "publisher": ("3 Publisher.publish_async vs a raw producer", publisher.publisher),
    "latency": ("4 end-to-end latency at half the max rate", latency.latency),
    "retry": ("5 retry delay lateness per tier", retry.retry),
    "ledger": ("6 ledger restore rate and memory per entry", ledger.ledger),
    "scaling": ("7 scaling over 1, 2, 3 worker processes", throughput.scaling),
    "costs": ("8 per-job cost breakdown (in-process)", costs.costs),
    "processes": ("9 one pod, 1 and 2 worker processes", throughput.processes),
    "delayed": ("10 delayed jobs: dispatch lateness, restore from a snapshot", delayed.delayed),
    "lanes": ("11 priority lanes: a high job behind a low backlog, weights, fair sharing",
              lanes.bench),
    "workflows": ("12 workflows: ctx.enqueue per child, batch callback latency",
                  workflows.bench),
    "lookup": ("13 jobs show: one job among 1,000,000 history records", lookup.bench),
}


def bootstrap(given: str | None) -> str:
    if given:
        return given
    for var in ("JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS", "JOBSTREAM_TEST_BOOTSTRAP"):
        if os.environ.get(var):
            return os.environ[var]
    return f"127.0.0.1:{load_settings().broker.port}"


def table(rows: list[Row]) -> str:
    head = ("benchmark", "figure", "measured", "baseline", "ratio", "target", "result")
    body = []
    for r in rows:
        result = "" if r.passed is None else ("pass" if r.passed else "MISS")
        base = f"{fmt(r.baseline, r.unit)} ({r.baseline_name})" if r.baseline is not None else ""
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        body.append((r.bench, r.name, fmt(r.measured, r.unit), base, ratio, r.target, result))
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*head), line.format(*("-" * w for w in widths))]
    out += [line.format(*row) for row in body]
    return "\n".join(out)


def markdown(rows: list[Row]) -> str:
    """The same table for the README."""
    out = [
        "| benchmark | figure | measured | baseline | ratio | target | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        result = "" if r.passed is None else ("pass" if r.passed else "**miss**")
        base = f"{fmt(r.baseline, r.unit)} ({r.baseline_name})" if r.baseline is not None else ""
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        out.append(
            f"| {r.bench} | {r.name} | {fmt(r.measured, r.unit)} | {base} | {ratio} | "
            f"{r.target} | {result} |"
        )
    return "\n".join(out)


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.rstrip()  # not strip(): porcelain lines start with a space
    except Exception:
        return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="benchmarks.run", description=(__doc__ or "").split("\n\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    ap.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this benchmark (repeatable, or comma-separated): {', '.join(BENCHMARKS)}",
    )
    ap.add_argument("--bootstrap", help="broker host:port (default: see above)")
    ap.add_argument("--out", type=Path, help="JSON results file")
    ap.add_argument("--keep", action="store_true", help="keep the scratch dir, logs and topics")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="attach py-spy to every worker; raw profiles go to benchmarks/results/",
    )
    ap.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    ap.add_argument(
        "--latency-rate",
        type=float,
        metavar="JOBS_PER_S",
        help="drive bench 4 at this fixed rate instead of half the measured maximum (to compare "
        "two versions at the same load)",
    )
    args = ap.parse_args(argv)
    if args.latency_rate is not None and not 0 < args.latency_rate <= 100_000:
        ap.error("--latency-rate must be between 0 and 100,000 jobs/s")
    if args.profile and not PY_SPY.exists():
        ap.error(f"--profile needs py-spy at {PY_SPY} (requirements-dev.txt; `make venv` "
                 "installs it)")

    names = list(BENCHMARKS)
    if args.only:
        wanted = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in BENCHMARKS]
        if unknown:
            ap.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
        names = [n for n in BENCHMARKS if n in wanted]
    full = not args.quick and not args.only
    out = args.out or (RESULTS / ("latest.json" if full else "partial.json"))
    server = bootstrap(args.bootstrap)
    run_id = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:4]

    rows: list[Row] = []
    errors: dict[str, str] = {}
    timings: dict[str, float] = {}
    started = time.time()
    with scratch_dir(args.keep) as tmp:
        b = Bench(server, run_id, tmp, args.quick, keep_logs=args.keep)
        if args.latency_rate is not None:
            b.shared["latency_rate"] = args.latency_rate
        if args.profile:
            RESULTS.mkdir(parents=True, exist_ok=True)
            b.profile_dir = RESULTS
        say(
            f"jobstream benchmarks ({'quick' if args.quick else 'full'} sizes) on {server}: "
            f"{', '.join(names)}"
        )
        try:
            for name in names:
                title, fn = BENCHMARKS[name]
                say(f"== {title}")
                t0 = time.time()
                try:
                    rows += fn(b)
                except Exception as e:
                    errors[name] = f"{type(e).__name__}: {e}"
                    say(f"!! {name} could not run: {errors[name]}")
                    traceback.print_exc()
                finally:
                    b.stop_all_workers()  # none left behind to disturb the next benchmark
                timings[name] = round(time.time() - t0, 1)
        finally:
            b.stop_all_workers()
            if not args.keep:
                try:
                    b.cleanup_topics()
                except Exception as e:
                    say(f"could not delete this run's topics: {e}")

    elapsed = time.time() - started
    print()
    print(table(rows))
    if args.markdown:
        print()
        print(markdown(rows))
    misses = [r for r in rows if r.passed is False]
    print()
    print(
        "Throughput = jobs / (first handler run -> all offsets committed); raw loops are timed "
        "from their first record. Latency is enqueue -> ledger record seen by a reader."
    )
    if misses:
        print(f"{len(misses)} target(s) MISSED:")
        for r in misses:
            print(f"  - {r.bench}: {r.name}: {fmt(r.measured, r.unit)} (target {r.target})")
    else:
        print("every target met" if rows else "no figures")
    for name, err in errors.items():
        print(f"benchmark {name} did not run: {err}")
    for note in b.notes:
        print(f"note: {note}")
    print(f"{elapsed:.0f} s in all; results in {out}")

    meta: dict[str, Any] = {
        "run_id": run_id,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sizes": "quick" if args.quick else "full",
        "benchmarks": names,
        "seconds": round(elapsed, 1),
        "seconds_per_benchmark": timings,
        "bootstrap": server,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty_paths": [
            line[3:] for line in _git("status", "--porcelain").splitlines() if line[3:]
        ],
        "python": sys.version.split()[0],
        "confluent_kafka": confluent_kafka.version()[0],
        "librdkafka": confluent_kafka.libversion()[0],
        "cpus": os.cpu_count(),
        "load_avg_at_end": list(os.getloadavg()),
        "platform": platform.platform(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(
        json.dumps(
            {
                "meta": meta,
                "rows": [r.as_dict() for r in rows],
                "misses": [f"{r.bench}: {r.name}" for r in misses],
                "errors": errors,
                "notes": b.notes,
            },
            indent=2,
        )
        + "\n"
    )
    tmp_out.replace(out)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
