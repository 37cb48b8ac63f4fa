"""worker.mode at_least_once against the real broker: no transaction ties a routing mark to its
retry record, so the order of the two writes is what keeps a job from being lost. (The whole
suite runs in this mode with JOBSTREAM_TEST_MODE=at_least_once.)"""

from __future__ import annotations

import time

import pytest

from tests.support.harness import Stack
from tests.support.harness import set_max_message_bytes as _set_max_bytes


@pytest.mark.parametrize("mode", ["at_least_once", "transactional"])
def test_a_retry_the_broker_refuses_is_redone_not_lost(stack_factory, bootstrap, mode) -> None:
    """The broker refuses the retry record (too large for the tier topic) but takes the small
    routing mark. The interval is redone until the tier takes records again; then the retry
    must be written and run. A mark written before its retry was acknowledged would make the
    redo skip the record as routed already: the job lost."""
    stack: Stack = stack_factory(worker={"mode": mode})
    tier = stack.topics.retries[0]
    # Small enough to refuse the record, large enough for the transaction markers (~80 bytes).
    _set_max_bytes(bootstrap, tier, "200")
    [jid] = stack.publish_many([({"seq": 0, "behaviour": "fail_until:2"}, "k1")])
    stack.start_worker()
    log = stack.tmp / "worker-0.log"
    stack.wait_for(
        lambda: log.exists() and log.read_text().count('"event": "interval_aborted"') >= 2,
        40,
        "the refused retry to abort the interval twice",
    )
    assert stack.read_topic(tier, 2) == []
    _set_max_bytes(bootstrap, tier, None)
    [run] = stack.wait_runs(1, timeout=40)
    assert (run["job_id"], run["attempt"], run["topic"]) == (jid, 2, tier)
    text = log.read_text()
    assert '"event": "routed_already"' not in text
    time.sleep(0.5)
    assert all(p.poll() is None for p in stack.procs), f"a worker died; logs in {stack.tmp}"


def test_offsets_are_committed_in_the_background_while_running(stack_factory) -> None:
    """The periodic at-least-once commit does not wait for the broker; it must still land:
    committed offsets reach the end of every partition while the worker runs, before any
    revoke or shutdown commit (commit_interval_ms 200)."""
    stack: Stack = stack_factory(worker={"mode": "at_least_once"})
    ids = stack.publish_many([({"seq": i, "behaviour": "ok"}, f"k{i}") for i in range(300)])
    stack.start_worker()
    stack.wait_runs(len(ids))
    ends = stack.end_offsets(stack.topics.main)
    stack.wait_for(
        lambda: stack.committed(stack.topics.main) == ends,
        20,
        f"committed offsets at the partition ends {ends}",
    )
    assert all(p.poll() is None for p in stack.procs), f"a worker stopped; logs in {stack.tmp}"
    ledger = {key for key, _ in stack.ledger_entries()}
    assert ledger == set(ids)
