"""`make demo`: create the topics, start a worker, publish sample jobs (one that fails for
good), and print what happened from the worker's own /metrics. Stops the worker at the end.
The demo's job types are its own (examples/schemas), added to the schema dirs set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from jobstream import Publisher
from jobstream.config.settings import Settings, load_settings
from jobstream.consumers.ops.topic_plan import apply, full_plan

PORT = 9481
SCHEMAS = Path(__file__).resolve().parent / "schemas"


def demo_settings() -> Settings:
    """The settings in effect, with the demo's schema directory added."""
    dirs = load_settings().schema_dirs
    return load_settings(schema_dirs=[*dirs, SCHEMAS] if SCHEMAS not in dirs else dirs)


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of the demo's worker: the same schema dirs, its own port and group."""
    return {
        **os.environ,
        "JOBSTREAM_SCHEMA_DIRS": json.dumps([str(d) for d in settings.schema_dirs]),
        "JOBSTREAM_WORKER__HTTP_PORT": str(PORT),
        "JOBSTREAM_LOG__FORMAT": "json",
        "JOBSTREAM_WORKER__GROUP_ID": "jobstream-demo",
        # The nightly reconciliation (examples/reconciliation.py), every 2 s for the demo.
        "JOBSTREAM_SCHEDULES": json.dumps({"billing.nightly": {
            "job_type": "billing.reconcile", "cron": "*/2 * * * * *",
            "payload": {"scope": "all", "days_back": 1}, "catch_up": "none"}}),
    }


def scrape() -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=2).read().decode()
    out = {}
    for line in body.splitlines():
        if line.startswith("jobstream_jobs_total{"):
            name, value = line.rsplit(" ", 1)
            out[name.removeprefix("jobstream_jobs_total")] = float(value)
        elif line.startswith("jobstream_schedule_firings_total{"):
            out["firings"] = out.get("firings", 0) + float(line.rsplit(" ", 1)[1])
    return out


def main() -> int:
    settings = demo_settings()
    job_types = ["orders.confirmation", "media.thumbnail", "reports.generate", "billing.reconcile"]
    print(f"== topics on {settings.kafka.bootstrap_servers}")
    for st in apply(settings, full_plan(settings, job_types)):
        print(f"   {st.spec.name:45} {st.action}")
    env = worker_env(settings)
    print("== starting a worker: jobstream worker --app examples.demo_jobs")
    with open("demo-worker.log", "w") as log:  # the child keeps its own descriptor
        worker = subprocess.Popen(
            [sys.executable, "-m", "jobstream", "worker", "--app", "examples.demo_jobs"],
            env=env,
            stderr=log,
        )
    run = uuid.uuid4().hex[:6]
    with Publisher(settings) as pub:
        for i in range(20):
            pub.publish(
                "orders.confirmation",
                {"order_id": f"o-{run}-{i}", "email": "a@example.com", "total_cents": 1999 + i},
                key=f"customer-{i % 4}",
            )
            pub.publish(
                "media.thumbnail",
                {
                    "image_id": f"img-{run}-{i}",
                    "source_uri": "s3://b/x.png",
                    "width": 128,
                    "height": 128,
                },
            )
        pub.publish(
            "reports.generate",
            {"account_id": "acme", "period": "2026-10", "requested_by": "ops@example.com"},
        )
        pub.publish(
            "orders.confirmation",
            {"order_id": f"bad-{run}", "email": "b@example.com", "total_cents": -1},
        )  # PermanentError -> DLQ
    print("== published 42 jobs (one will be dead-lettered)")
    seen: dict[str, float] = {}
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            seen = scrape()
        except OSError:
            seen = {}
        if jobs_done(seen) >= 42 and seen.get("firings", 0) >= 2:
            break
        time.sleep(0.5)
    worker.send_signal(signal.SIGTERM)
    code = worker.wait(60)
    print("== what the worker did (jobstream_jobs_total, cumulative for this demo group):")
    for labels, value in sorted(seen.items()):
        if labels != "firings":
            print(f"   {labels:70} {value:g}")
    print(f"== the schedule billing.nightly (every 2 s here) fired {seen.get('firings', 0):g} "
          "times: jobstream schedules list")
    print(f"== worker stopped on SIGTERM with exit code {code}; its JSON log is demo-worker.log")
    # By topic name: the shell's settings may not list the demo's schema dir.
    print("== dead letters: jobstream dlq list jobs.orders.confirmation.dlq")
    return 0 if code == 0 and jobs_done(seen) >= 42 else 1


def jobs_done(seen: dict[str, float]) -> float:
    """The published jobs finished (the schedule's own jobs not counted)."""
    return sum(v for k, v in seen.items() if k != "firings" and "billing.reconcile" not in k)


if __name__ == "__main__":
    sys.exit(main())
