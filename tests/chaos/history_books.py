"""The history books of a chaos run (issue 21): once the workers have stopped, T.history holds,
for every job, one attempt record per attempt that finished (1..n, the last one its final
outcome) and none of an aborted interval (such a record would repeat an attempt's number), and
every chain of the job type verifies (`jobstream audit verify`).

Transactional mode only: at least once, a crash between an attempt's record and its commit
reruns the attempt and writes its record again, and may fork a chain (docs/lifecycle.md)."""

from __future__ import annotations

import json
from collections import defaultdict

from jobstream.schemas import history
from tests.chaos.books import Workload
from tests.support.harness import Stack, run_cli

FINAL = {"ok": "succeeded", "poison": "dead_lettered"}
COUNTED = ("succeeded", "retried", "dead_lettered")  # an attempt that ran and finished


def history_violations(stack: Stack, wl: Workload) -> list[str]:
    """What is wrong with the job type's history after the run; [] when nothing is."""
    attempts: dict[str, list[tuple[int, str]]] = defaultdict(list)
    unreadable = 0
    for m in stack.read_topic(stack.topics.history, timeout=180):
        try:
            recs = history.events(history.decode(m.value()))
        except history.HistoryError:
            unreadable += 1
            continue
        for rec in recs:
            if rec["event"] == "attempt" and rec["outcome"] in COUNTED:
                attempts[rec["job_id"]].append((int(rec["attempt"]), str(rec["outcome"])))
    v: list[str] = []
    if unreadable:
        v.append(f"{unreadable} T.history records that are not history records")
    designed = {**{j: "ok" for j in wl.ok}, **{j: "poison" for j in wl.poison}}
    missing = sorted(j for j in designed if j not in attempts)
    if missing:
        v.append(f"history: {len(missing)} jobs without any attempt record, e.g. {missing[:5]}")
    strays = sorted(set(attempts) - set(designed))
    if strays:
        v.append(f"history: {len(strays)} jobs never published have records: {strays[:5]}")
    repeated, gapped, wrong_end = [], [], []
    for jid, recs in attempts.items():
        numbers = sorted(n for n, _ in recs)
        if len(numbers) != len(set(numbers)):
            repeated.append((jid, sorted(recs)))
        elif numbers != list(range(1, len(numbers) + 1)):
            gapped.append((jid, numbers))
        want = FINAL.get(designed.get(jid, ""))
        last = max(recs)[1]
        early = [o for n, o in recs if n != max(numbers) and o != "retried"]
        if want is not None and (last != want or early):
            wrong_end.append((jid, sorted(recs)))
    if repeated:
        v.append(f"history: {len(repeated)} jobs with an attempt recorded twice (an aborted "
                 f"interval's record, or a double write), e.g. {repeated[:3]}")
    if gapped:
        v.append(f"history: {len(gapped)} jobs with attempts missing, e.g. {gapped[:3]}")
    if wrong_end:
        v.append(f"history: {len(wrong_end)} jobs whose records do not end in their designed "
                 f"outcome after retries only, e.g. {wrong_end[:3]}")
    res = run_cli("audit", "verify", stack.job_type, "--json", timeout=300,
                  env={"JOBSTREAM_CONFIG": str(stack.config_path)})
    try:
        report = json.loads(res.stdout)
    except ValueError:
        report = None
    if res.returncode != 0 or not isinstance(report, dict) or not report.get("ok"):
        v.append(f"audit verify {stack.job_type}: exit {res.returncode}: "
                 f"{(res.stdout or res.stderr)[:1500]}")
    return v
