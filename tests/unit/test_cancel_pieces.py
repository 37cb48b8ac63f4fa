"""The pieces of a cancel (issue 21) that need no broker: the ledger entry codec (old entries
read the same, a cancel is no completion to the restore), the status fold (a cancel beside a
run that raced it), and what `jobs show` says of a skip."""

from __future__ import annotations

import json

import pytest

from jobstream.consumers.runtime.ledger_view import LedgerView
from jobstream.schemas.ledger_entry import (
    CANCELLED_BYTE,
    cancel_key,
    cancelled_at,
    cancelled_job,
    decode_entry,
    encode_cancel,
    encode_entry,
    entry_finished_at,
)
from jobstream.schemas.lifecycle import describe, fold
from jobstream.schemas.registry import INTERNAL_DIR, avro_writer
from tests.support.harness import free_port, run_cli


def test_a_cancel_entry_reads_back_and_is_no_completion() -> None:
    value = encode_cancel(1_795_474_937_360, 2, "ops@host")
    assert value[0] == CANCELLED_BYTE
    assert cancelled_at(value) == 1_795_474_937_360
    assert entry_finished_at(value) is None  # the restore must not count it as done
    entry = decode_entry(value)
    assert entry is not None
    assert (entry["status"], entry["attempt"], entry["worker"]) == ("cancelled", 2, "ops@host")
    assert cancelled_at(encode_entry("succeeded", 5, 1, "w")) is None


def test_entries_written_with_the_old_schema_read_the_same() -> None:
    old = json.loads((INTERNAL_DIR / "ledger.avsc").read_text())
    old["fields"][0]["type"]["symbols"] = ["succeeded", "dead_lettered", "retried", "started"]
    write_old = avro_writer(old)
    for status in ("succeeded", "dead_lettered", "retried"):
        value = write_old({"status": status, "finished_at": 77, "attempt": 1, "worker": "w",
                           "result_digest": None})
        assert value == encode_entry(status, 77, 1, "w")
        assert entry_finished_at(value) == 77
        assert decode_entry(value)["status"] == status  # type: ignore[index]


def test_the_cancel_key_names_the_job() -> None:
    assert cancelled_job(cancel_key("job-1").encode()) == "job-1"
    assert cancelled_job(b"job-1") is None and cancelled_job(b"!started/t/0") is None


def test_cancels_in_a_view_expire_with_the_ledger_ttl() -> None:
    view = LedgerView()
    view.cancelled.update({"old": 1_000, "new": 9_000})
    view.expire(5_000)
    assert set(view.cancelled) == {"new"}


def _attempt(n: int, outcome: str, **kw: object) -> dict[str, object]:
    return {"event": "attempt", "job_id": "j", "attempt": n, "outcome": outcome, "at": n, **kw}


def test_the_fold_of_a_cancel() -> None:
    retried = _attempt(1, "retried", retry={"tier": "t.retry.1s", "due_at": 5})
    asked = {"event": "cancelled", "job_id": "j", "at": 2, "user": "ops@host"}
    # Asked for while retrying: cancelled at once, before a worker took the job.
    st = fold("j", "t", [retried, asked])
    assert (st.state, st.attempts, st.due_at, st.final) == ("cancelled", 1, None, True)
    # The worker's skip is not an attempt made.
    st = fold("j", "t", [retried, asked, _attempt(2, "cancelled")])
    assert (st.state, st.attempts) == ("cancelled", 1)
    # A run that raced the cancel and succeeded stays succeeded.
    st = fold("j", "t", [asked, _attempt(1, "succeeded")], ledger_state="succeeded",
              cancelled=True)
    assert st.state == "succeeded"
    # Only the ledger's cancel entry (history expired): cancelled.
    assert fold("j", "t", [], cancelled=True).state == "cancelled"
    # A running attempt is not stopped: running until it ends.
    progress = {"event": "progress", "job_id": "j", "at": 3, "fraction": 0.5}
    assert fold("j", "t", [progress], cancelled=True).state == "running"


def test_jobs_show_describes_a_skip_and_a_cancel() -> None:
    assert describe(_attempt(2, "cancelled")) == "skipped: cancelled before it ran"
    assert "user=ops@host" in describe({"event": "cancelled", "job_id": "j", "at": 1,
                                        "user": "ops@host", "reason": "jobs cancel"})


@pytest.mark.parametrize("args,named", [
    (["a", "b", "--key", "k"], "--key"),
    (["a", "--confirm-timeout", "soon"], "--confirm-timeout"),
])
def test_jobs_cancel_refuses_bad_options_in_one_line(args: list[str], named: str) -> None:
    env = {"JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    proc = run_cli("jobs", "cancel", "orders.confirmation", *args, env=env)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and named in lines[0], proc.stderr
