"""Cancel (issue 21) on the real broker, with a real worker process: 100 jobs, half of them
waiting in a retry tier (their first attempt failed) and half queued behind a slow job on the
worker's only thread, cancelled while they wait: none runs after its cancel, each is reported
`cancelled` by Publisher.status and `jobs show`, the worker counts and records each skip.
Cancelling a succeeded job changes nothing and says so; an unknown id says so too."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from jobstream.consumers.ops.audit import list_audit
from jobstream.producers.cancel import CancelResult
from jobstream.schemas import history
from jobstream.schemas.ledger_entry import cancel_key, decode_entry
from tests.support.harness import Stack, run_cli

N_RETRYING = 50
N_QUEUED = 50


@pytest.fixture
def stack(stack_factory: Any) -> Stack:
    """One handler thread (the slow job holds it), a first retry tier long enough to cancel in."""
    s: Stack = stack_factory(job={"retry_tiers": ["40s", "60s"], "timeout_s": 60},
                             worker={"max_in_flight": 1, "commit_interval_ms": 100})
    return s


def _history(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in stack.read_topic(stack.topics.history, timeout=30):
        for rec in history.events(history.decode(m.value())):
            out.setdefault(rec["job_id"], []).append(rec)
    return out


def test_cancelled_jobs_in_retry_tiers_and_behind_a_slow_job_never_run(stack: Stack) -> None:
    jt = stack.job_type
    stack.start_worker(JOBSTREAM_LOG__LEVEL="DEBUG")
    retrying = stack.publish_many(
        [({"seq": i, "behaviour": "fail_until:2"}, f"r{i}") for i in range(N_RETRYING)])
    def retried() -> int:  # the sink only has runs that succeeded: history has the failures
        return sum(1 for recs in _history(stack).values()
                   if any(r.get("outcome") == "retried" for r in recs))

    stack.wait_for(lambda: retried() >= N_RETRYING, 30, "every retrying job's first attempt")
    slow = stack.publish_many([({"seq": 1000, "behaviour": "sleep_ms:30000"}, "slow")])[0]
    stack.wait_for(lambda: any(r["job_id"] == slow for r in _started(stack)), 30,
                   "the slow job running")
    queued = stack.publish_many(
        [({"seq": 2000 + i, "behaviour": "ok"}, f"q{i}") for i in range(N_QUEUED)])
    targets = [(j, f"r{i}") for i, j in enumerate(retrying)] + [
        (j, f"q{i}") for i, j in enumerate(queued)]

    t0 = time.monotonic()
    with stack.publisher() as pub:
        results: list[CancelResult] = pub.cancel_many(jt, targets)
        acked = time.time()
    took = time.monotonic() - t0
    print(f"100 cancels in {took:.1f} s")
    assert [r.outcome for r in results] == ["cancelled"] * 100, Counter(
        (r.outcome, r.state) for r in results)
    assert Counter(r.state for r in results) == {"retrying": N_RETRYING, "queued": N_QUEUED}
    assert all(r.confirmed for r in results), [r.message for r in results if not r.confirmed]

    # The worker takes each: the queued ones once the slow job ends, the retrying ones when due.
    def skipped() -> set[str]:
        return {j for j, recs in _history(stack).items()
                if any(r.get("outcome") == "cancelled" and r["event"] == "attempt" for r in recs)}

    ids = {j for j, _ in targets}
    stack.wait_for(lambda: ids <= skipped(), 120, "the worker skipping all 100")
    runs = stack.runs()
    assert [r for r in runs if r["job_id"] in ids and r["start"] >= acked - took] == []
    counts = Counter(r["job_id"] for r in runs)
    assert not any(counts[j] for j in ids)  # (the sink has successful runs only)
    assert counts[slow] == 1
    attempts = Counter(r["attempt"] for j in retrying for r in _history(stack)[j]
                       if r["event"] == "attempt" and r["outcome"] != "cancelled")
    assert attempts == {1: N_RETRYING}  # the first attempt only, then the skip

    with stack.publisher() as pub, ThreadPoolExecutor(8) as pool:
        states = list(pool.map(lambda t: pub.status(jt, t[0], key=t[1]), targets))
    assert [(s.state, s.final) for s in states] == [("cancelled", True)] * 100
    assert {s.attempts for s in states[:N_RETRYING]} == {1}  # the skip is no attempt
    assert {s.attempts for s in states[N_RETRYING:]} == {0}
    for (j, key), before in ((targets[0], "retrying"), (targets[-1], "queued")):
        shown = run_cli("jobs", "show", jt, j, "--key", key, env=stack.env())
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0].startswith(f"{jt} {j}: cancelled"), shown.stdout
        assert any(ln.strip().startswith("cancelled by ") and f"(was {before})" in ln
                   for ln in lines), shown.stdout
        rows = [ln for ln in lines if "│" in ln]
        assert any("attempt" in ln and "cancelled" in ln and "skipped" in ln
                   for ln in rows), shown.stdout
        assert any("retried" in ln for ln in rows) == (before == "retrying"), shown.stdout
    # Counted by the worker (the metric) and audited (one record per cancel).
    audited = [j for r in list_audit(stack.settings, limit=1000)
               if r.get("command") == "jobs cancel" for j in r.get("jobs", [])
               if j["job_id"] in ids]
    assert len(audited) == 100
    assert {j["previous_state"] for j in audited} == {"retrying", "queued"}
    assert all(j["destination"].startswith(stack.topics.ledger) for j in audited)


def _started(stack: Stack) -> list[dict[str, Any]]:
    """The worker's `started` events (it logs at DEBUG here): the sink writes a run's line only
    when the run ends."""
    out = []
    for path in stack.tmp.glob("worker-*.log"):
        for ln in path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(ln)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("event") == "started":
                out.append(rec)
    return out


def test_cancelling_a_succeeded_job_changes_nothing_and_says_so(stack: Stack) -> None:
    jt = stack.job_type
    stack.start_worker()
    with stack.publisher() as pub:
        done = pub.publish(jt, {"seq": 1, "behaviour": "ok"}, key="d1")
        assert pub.wait(jt, done, key="d1", timeout=60).state == "succeeded"
        res = pub.cancel(jt, done, key="d1")
        assert (res.outcome, res.state, res.cancelled) == ("already_final", "succeeded", False)
        assert "already succeeded: nothing changed" in res.message
        unknown = pub.cancel(jt, "no-such-job")
        assert unknown.outcome == "unknown" and "no record of this job" in unknown.message
        assert pub.status(jt, done, key="d1").state == "succeeded"
    cli = run_cli("jobs", "cancel", jt, done, "--key", "d1", env=stack.env())
    assert cli.returncode == 3, (cli.stdout, cli.stderr)
    assert "already succeeded: nothing changed" in cli.stdout
    cli = run_cli("jobs", "cancel", jt, "no-such-job", env=stack.env())
    assert cli.returncode == 4 and "no record of this job" in cli.stdout, cli.stdout
    keys = {(m.key() or b"").decode() for m in stack.read_topic(stack.topics.ledger)}
    assert cancel_key(done) not in keys and cancel_key("no-such-job") not in keys
    entries = dict(stack.ledger_entries())
    assert entries[done]["status"] == "succeeded"
    assert not [r for r in list_audit(stack.settings, limit=500)
                if r.get("command") == "jobs cancel" and r.get("job_id") == done]


def test_a_scheduled_job_gets_its_tombstone_and_the_ledger_entry(stack: Stack) -> None:
    jt = stack.job_type
    with stack.publisher() as pub:
        jid = pub.publish(jt, {"seq": 5, "behaviour": "ok"}, key="s5", delay="5s")
        res = pub.cancel(jt, jid, key="s5")
    assert (res.outcome, res.state, res.confirmed) == ("cancelled", "scheduled", True), res
    sched = [m for m in stack.read_topic(stack.topics.scheduled) if m.key() == jid.encode()]
    assert sched[-1].value() is None  # the tombstone
    cancels = [m for m in stack.read_topic(stack.topics.ledger)
               if m.key() == cancel_key(jid).encode()]
    assert len(cancels) == 1 and decode_entry(cancels[0].value())["status"] == "cancelled"
    cli = run_cli("jobs", "cancel", jt, jid, "--key", "s5", env=stack.env())
    assert cli.returncode == 3 and "already cancelled" in cli.stdout, cli.stdout
