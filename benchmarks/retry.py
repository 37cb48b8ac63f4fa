"""Retry delay accuracy (5): how late a retried job runs against its js-not-before.

bench.retry raises RetryAfter(delay_s) on its first attempt, which routes it to the first tier
at least that long; the retried run appends (not-before, start time) to a sink file.
Lateness = handler start - js-not-before (jitter is inside not-before, so it does not count).
Jobs are published at a steady rate (not as one burst), so lateness shows the tier gating,
not a queue of jobs that all came due in the same millisecond.
"""

from __future__ import annotations

import time
from collections import defaultdict

from benchmarks.common import Bench, BenchError, Row, limit_row, percentile, retry_payload, say

TARGET_P99_S = 0.5


def retry(b: Bench) -> list[Row]:
    if b.quick:
        tiers = {"1s": (1, 200), "10s": (10, 100)}
        note = "quick: 60 s tier skipped"
    else:
        tiers = {"1s": (1, 2_000), "10s": (10, 1_000), "1m": (60, 300)}
        note = ""
    publish_s = b.size(5, 2)
    st = b.stack("retry", "bench.retry", job={"retry_tiers": list(tiers)})
    st.start_worker(http=True)
    st.wait_ready()
    plan = [d for d, count in tiers.values() for _ in range(count)]
    # Interleave the tiers so every tier's jobs spread over the publishing window.
    order = sorted(range(len(plan)), key=lambda i: (i * 7919) % len(plan))
    total = len(plan)
    say(f"retry: {total:,} jobs over {publish_s} s, tiers {list(tiers)}")
    with st.publisher() as pub:
        t0 = time.time()
        for k, i in enumerate(order):
            wait = t0 + k * publish_s / total - time.time()
            if wait > 0:
                time.sleep(wait)
            pub.publish_async("bench.retry", retry_payload(i, plan[i]))
    longest = max(d for d, _ in tiers.values())
    deadline = time.time() + publish_s + longest * 1.1 + 60
    lines: list[str] = []
    while time.time() < deadline:
        st.check_alive()
        lines = st.sink.read_text().splitlines() if st.sink.exists() else []
        if len(lines) >= total:
            break
        time.sleep(0.5)
    st.stop_workers()
    st.tidy()
    if len(lines) < total:
        raise BenchError(f"retry: only {len(lines)} of {total} retried jobs ran in time")
    late: dict[int, list[float]] = defaultdict(list)
    for line in lines:
        _job_id, delay_s, not_before, started_ms, _attempt = line.split()
        late[int(delay_s)].append((float(started_ms) - int(not_before)) / 1000)
    rows = []
    early_total = 0
    for name, (delay, _count) in tiers.items():
        values = late[delay]
        early = sum(1 for v in values if v < 0)
        early_total += early
        p50, p99, worst = percentile(values, 50), percentile(values, 99), max(values)
        say(f"retry/{name}: lateness p50 {p50:.3f} s, p99 {p99:.3f} s, max {worst:.3f} s")
        rows.append(
            limit_row(
                "5 retry delay",
                f"{name} tier lateness p99",
                p99,
                "s",
                TARGET_P99_S,
                f"p50 {p50:.3f} s, max {worst:.3f} s, {len(values):,} jobs",
            )
        )
    rows.append(
        limit_row(
            "5 retry delay", "retried runs before js-not-before", early_total, "jobs", 0, note
        )
    )
    return rows
