"""A dead-lettered job replayed and then succeeded (issue 21), on the real broker: `dlq replay`
writes a `replayed` record in the job's T.history partition, so `jobs show` tells the whole
story (the dead letter, who replayed it from where, the run that succeeded) under one trace id;
and the history chain with the replay's own stream in it still verifies."""

from __future__ import annotations

import json
from typing import Any

from tests.support.harness import Stack, run_cli


def test_a_replay_is_in_the_jobs_timeline(stack_factory: Any) -> None:
    stack: Stack = stack_factory()
    jt = stack.job_type
    stack.start_worker()
    with stack.publisher() as pub:
        jid = pub.publish(jt, {"seq": 1, "behaviour": "permanent"}, key="p1")
        assert pub.wait(jt, jid, key="p1", timeout=60).state == "dead_lettered"
    stack.stop_all()
    stack.start_worker(JOBSTREAM_TEST_FIXED="1")  # the fix deployed
    res = run_cli("dlq", "replay", jt, "--yes", "--from-start", env=stack.env())
    assert res.returncode == 0, res.stderr
    with stack.publisher() as pub:
        st = pub.wait(jt, jid, key="p1", timeout=60)
    assert st.state == "succeeded"
    kinds = [(r["event"], r.get("outcome")) for r in st.events]
    assert kinds == [("attempt", "dead_lettered"), ("replayed", None), ("attempt", "succeeded")]
    replayed = st.events[1]
    assert replayed["from"].startswith(stack.topics.dlq) and replayed["to"] == stack.topics.main
    assert len({r.get("trace_id") for r in st.events}) == 1 and st.trace_id

    shown = run_cli("jobs", "show", jt, jid, "--key", "p1", env=stack.env())
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].startswith(f"{jt} {jid}: succeeded")
    assert any(ln.strip().startswith("replayed by ") and stack.topics.dlq in ln
               for ln in shown.stdout.splitlines()), shown.stdout
    as_json = json.loads(run_cli("jobs", "show", jt, jid, "--key", "p1", "--json",
                                 env=stack.env()).stdout)
    assert [e["event"] for e in as_json["events"]] == ["attempt", "replayed", "attempt"]
    verify = run_cli("audit", "verify", jt, env=stack.env())
    assert verify.returncode == 0, verify.stdout + verify.stderr
