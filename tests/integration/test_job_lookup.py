"""Looking a job up (issue 21): `Publisher.status` / `wait` and `jobstream jobs show|wait` read
the job's partition of T.history, T.ledger and T's unconsumed tail, on a real broker. The
records here are written the way the worker writes them (schemas/history.py, the ledger's
encoding), beside other jobs' records and foreign bytes in the same partitions."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from jobstream.config.topics import job_topics
from jobstream.producers.status import JobLookupError, WaitTimeout
from jobstream.schemas import history, wire
from jobstream.schemas.ledger_entry import SUCCEEDED, encode_entry
from jobstream.schemas.partitioner import partition_for
from jobstream.schemas.registry import UnknownJobType
from tests.support.harness import Stack, make_stack, run_cli

POLICY = history.Policy((1.0, 2.0), 4, 10.0)


def _attempt(job_id: str, n: int, outcome: str, **kw: Any) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return history.attempt(job_id=job_id, job_type="test.echo", attempt=n, worker="w-1",
                           started_at=now - 5, finished_at=now, outcome=outcome, policy=POLICY,
                           source=("t", 0, n), **kw)


def _write_history(stack: Stack, key: str, recs: list[dict[str, Any]]) -> None:
    t = job_topics(stack.job_type, stack.settings.job(stack.job_type))
    p = partition_for(key.encode(), 6)
    prev, rows = "", []
    for rec in recs:
        value, prev = history.encode(rec, prev, history.stream_for(t.main, p))
        rows.append((p, key.encode(), value, []))
    stack.produce_raw(rows, topic=t.history)


@pytest.fixture
def stack(stack_factory: Any) -> Stack:
    """Its workers are stopped and its topics deleted at the end (conftest.py)."""
    s: Stack = stack_factory()
    return s


def test_status_folds_attempts_result_and_ledger(stack: Stack) -> None:
    t = stack.topics
    key = "order-7"
    _write_history(stack, key, [
        _attempt("other-job", 1, "succeeded"),  # same key, another job: not this one's
        _attempt("job-1", 1, "retried", error=("transient", "ConnectionError", "refused"),
                 retry=(t.retries[0], 123)),
        _attempt("job-1", 2, "succeeded", result={"url": "s3://x"}, has_result=True),
    ])
    p = partition_for(key.encode(), 6)
    stack.produce_raw([(p, b"junk", b"\xff not json", [])], topic=t.history)
    with stack.publisher() as pub:
        st = pub.status("test.echo", "job-1", key=key)
    assert (st.state, st.attempts, st.result, st.has_result) == (
        "succeeded", 2, {"url": "s3://x"}, True)
    assert [r["attempt"] for r in st.events] == [1, 2]
    # The ledger's word alone also tells a finished job (history may have expired).
    stack.produce_raw([(partition_for(b"job-2", 6), b"job-2",
                        encode_entry(SUCCEEDED, 1, 1, "w-1"), [])], topic=t.ledger)
    with stack.publisher() as pub:
        assert pub.status("test.echo", "job-2").state == "succeeded"
        assert pub.status("test.echo", "no-such-job").state == "unknown"


def test_a_job_not_yet_taken_is_queued(stack: Stack) -> None:
    with stack.publisher() as pub:
        job_id = pub.publish("test.echo", {"seq": 1}, key="k-1")
        st = pub.status("test.echo", job_id, key="k-1")
        assert st.state == "queued", st
        # Looked up under the wrong key: another partition, nothing there.
        wrong = next(k for k in ("a", "b", "c", "d", "e", "f", "g")
                     if partition_for(k.encode(), 6) != partition_for(b"k-1", 6))
        assert pub.status("test.echo", job_id, key=wrong).state == "unknown"


def test_wait_returns_when_the_job_finishes_and_times_out_otherwise(stack: Stack) -> None:
    key = "w-1"
    _write_history(stack, key, [_attempt("job-w", 1, "retried", retry=("t.retry", 1))])

    def later() -> None:
        time.sleep(1.5)
        _write_history(stack, key, [_attempt("job-w", 2, "dead_lettered",
                                             error=("permanent", "PermanentError", "no"))])

    threading.Thread(target=later, daemon=True).start()
    started = time.monotonic()
    with stack.publisher() as pub:
        st = pub.wait("test.echo", "job-w", key=key, timeout=30)
        assert st.state == "dead_lettered" and st.attempts == 2, st
        assert time.monotonic() - started < 15
        with pytest.raises(WaitTimeout) as e:
            pub.wait("test.echo", "never-finishes", timeout=1.5)
        assert e.value.status.state == "unknown"


def test_without_a_key_every_partition_is_searched(stack: Stack) -> None:
    """Issue 21: `jobs show` without --key searches every partition. Before, it read only the
    partition of the job's id, so a job published with a key of its own was `unknown` there
    (and a cancel without --key went to the wrong ledger partition)."""
    key = next(f"k{i}" for i in range(100)  # a key whose partition is not the id's
               if partition_for(f"k{i}".encode(), 6) != partition_for(b"job-far", 6))
    _write_history(stack, key, [
        _attempt("job-far", 1, "retried", retry=("t.retry", 1)),
        _attempt("job-far", 2, "succeeded", result={"ok": 1}, has_result=True)])
    with stack.publisher() as pub:
        st = pub.status("test.echo", "job-far")
        assert (st.state, st.attempts, st.key, st.partition) == (
            "succeeded", 2, key, partition_for(key.encode(), 6)), st
        queued = pub.publish("test.echo", {"seq": 1}, key=key)
        st = pub.status("test.echo", queued)
        assert (st.state, st.key) == ("queued", key), st
    env = {"JOBSTREAM_CONFIG": str(stack.config_path)}
    res = run_cli("jobs", "show", "test.echo", "job-far", env=env)
    assert res.returncode == 0 and "succeeded after 2 attempts" in res.stdout, res.stdout
    assert f"key: {key} (partition {partition_for(key.encode(), 6)})" in res.stdout, res.stdout
    # --since: records before it are not read; after it, they are.
    res = run_cli("jobs", "show", "test.echo", "job-far", "--since", "-1h", "--json", env=env)
    assert json.loads(res.stdout)["state"] == "succeeded", res.stdout
    res = run_cli("jobs", "show", "test.echo", "job-far", "--since", "2999-01-01", "--json",
                  env=env)
    assert json.loads(res.stdout)["state"] == "unknown", res.stdout
    res = run_cli("jobs", "show", "test.echo", "job-far", "--since", "yesterday", env=env)
    assert res.returncode == 1 and "--since 'yesterday'" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_bad_lookups_are_clear_errors(stack: Stack, tmp_path: Path, bootstrap: str) -> None:
    with stack.publisher() as pub:
        with pytest.raises(UnknownJobType):
            pub.status("no.such.type", "job-1")
        from jobstream.producers.errors import InvalidJob

        with pytest.raises(InvalidJob, match="job_id"):
            pub.status("test.echo", "")
    bare = make_stack(tmp_path, bootstrap, stack.group.replace("g.", "bare"), create=False)
    with bare.publisher() as pub, pytest.raises(JobLookupError, match="topics apply"):
        pub.status("test.echo", "job-1")


def test_cli_show_and_wait(stack: Stack) -> None:
    key = "cli-1"
    _write_history(stack, key, [
        _attempt("job-c", 1, "succeeded", result={"n": 3}, has_result=True)])
    env = {"JOBSTREAM_CONFIG": str(stack.config_path)}
    res = run_cli("jobs", "show", "test.echo", "job-c", "--key", key, env=env)
    assert res.returncode == 0, res.stderr
    assert "succeeded after 1 attempt" in res.stdout and '"n": 3' in res.stdout, res.stdout
    res = run_cli("jobs", "show", "test.echo", "job-c", "--key", key, "--json", env=env)
    data = json.loads(res.stdout)
    assert data["state"] == "succeeded" and data["final"] is True and data["result"] == {"n": 3}
    res = run_cli("jobs", "wait", "test.echo", "job-c", "--key", key, env=env)
    assert res.returncode == 0, res.stderr
    res = run_cli("jobs", "wait", "test.echo", "job-x", "--timeout", "1s", env=env)
    assert res.returncode == 124 and "timed out" in res.stderr, (res.returncode, res.stderr)
    res = run_cli("jobs", "show", "no.such", "job-c", env=env)
    assert res.returncode == 1 and "unknown job type 'no.such'" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr



def test_a_refresh_does_not_wait_for_an_eof_it_has_already_read(stack: Stack) -> None:
    """A refresh must not wait for an end-of-partition event it has already read. When records
    arrived on T while another partition was still being read, the read took them and the EOF
    event of T's new end in the same batch; the next refresh measured that new end, took it
    for unread and waited out its whole timeout for an EOF that had come and gone (a chain's
    `Publisher.wait` failed after 120 s under load this way). Here the records arrive right
    after a refresh has measured the ends, which is when that happened."""
    from jobstream.producers.status import JobLookup

    key = "order-9"
    p = partition_for(key.encode(), 6)
    with JobLookup(stack.settings, stack.job_type, "job-9", key, timeout=6) as lookup:
        lookup.refresh()
        _write_history(stack, key, [_attempt("other-1", 1, "succeeded")])  # history pending
        measure = lookup._reopen

        def measure_then_more_arrive() -> None:
            measure()
            stack.produce_raw([(p, key.encode(), b"x", [(wire.JOB_ID, b"other-2")])] * 3)
            time.sleep(1)  # fetched in the background, EOF event included

        lookup._reopen = measure_then_more_arrive  # type: ignore[method-assign]
        assert lookup.refresh().state == "unknown"
        lookup._reopen = measure  # type: ignore[method-assign]
        t0 = time.monotonic()
        assert lookup.refresh().state == "unknown"  # nothing new: must not wait for an EOF
        assert time.monotonic() - t0 < 3
