"""schemas/lifecycle.py and schemas/history.py: a job's state from its history records."""

from __future__ import annotations

import pytest

from jobstream.schemas import history
from jobstream.schemas.chain import GENESIS, Verifier
from jobstream.schemas.lifecycle import fold

POLICY = history.Policy((10.0, 60.0), 3, 30.0)


def _attempt(n: int, outcome: str, **kw: object) -> dict:
    return history.attempt(job_id="j1", job_type="t", attempt=n, worker="w1",
                           started_at=1000 * n, finished_at=1000 * n + 5, outcome=outcome,
                           policy=POLICY, source=("jobs.t", 0, n), **kw)  # type: ignore[arg-type]


def test_two_failures_then_a_result() -> None:
    recs = [
        _attempt(1, "retried", error=("transient", "OSError", "boom"),
                 retry=("jobs.t.retry.10s", 11_000), trace_id="a" * 32, submitter="svc@h"),
        _attempt(2, "retried", error=("timeout", "TimeoutError", "slow"),
                 retry=("jobs.t.retry.1m", 62_000)),
        _attempt(3, "succeeded", result={"url": "s3://x"}, has_result=True),
    ]
    st = fold("j1", "t", recs)
    assert (st.state, st.attempts, st.result, st.last_error) == (
        "succeeded", 3, {"url": "s3://x"}, None)
    assert st.trace_id == "a" * 32 and st.submitter == "svc@h" and st.final


def test_retrying_carries_its_due_time_and_error() -> None:
    st = fold("j1", "t", [_attempt(1, "retried", error=("transient", "E", "m"),
                                   retry=("jobs.t.retry.10s", 11_000))])
    assert (st.state, st.due_at, st.last_error["class"]) == ("retrying", 11_000, "E")
    assert not st.final


def test_dead_lettered_then_replayed_is_queued_until_it_runs() -> None:
    dead = _attempt(1, "dead_lettered", error=("permanent", "E", "m"))
    replay = history.event("replayed", job_id="j1", job_type="t", at=5000, by="ops@h")
    assert fold("j1", "t", [dead]).state == "dead_lettered"
    assert fold("j1", "t", [dead, replay]).state == "queued"
    assert fold("j1", "t", [dead, replay, _attempt(2, "succeeded")]).state == "succeeded"


def test_the_ledger_wins_and_scheduled_shows_when() -> None:
    assert fold("j1", "t", [], ledger_state="succeeded").state == "succeeded"
    assert fold("j1", "t", []).state == "unknown"
    st = fold("j1", "t", [], scheduled_at=99_000)
    assert (st.state, st.due_at) == ("scheduled", 99_000)
    cancel = history.event("cancelled", job_id="j1", job_type="t", at=1, by="ops@h")
    assert fold("j1", "t", [cancel], scheduled_at=99_000).state == "cancelled"


def test_progress_and_children() -> None:
    recs = [history.event("progress", job_id="j1", job_type="t", at=1, fraction=0.5,
                          message="half way"),
            history.event("enqueued", job_id="j1", job_type="t", at=2, child_job_id="c1",
                          child_job_type="u")]
    st = fold("j1", "t", recs)
    assert st.state == "running" and st.progress == (0.5, "half way") and st.children == ["c1"]


def test_records_round_trip_sealed_in_their_stream() -> None:
    prev = GENESIS
    v = Verifier()
    for i, rec in enumerate([_attempt(1, "succeeded", result=None, has_result=True)]):
        raw, prev = history.encode(rec, prev, history.stream_for("jobs.t", 0))
        back = history.decode(raw)
        v.feed(i, back)
        assert back["result"] is None and "result" in back
    assert v.ok


@pytest.mark.parametrize("raw", [b"", b"[1]", b'{"event":"x","job_id":"j","at":1}',
                                 b'{"event":"attempt","at":1}'])
def test_foreign_records_are_refused_by_name(raw: bytes) -> None:
    with pytest.raises(history.HistoryError):
        history.decode(raw)


def test_result_limit_names_the_setting() -> None:
    assert history.result_bytes({"a": 1}, 100) == b'{"a":1}'
    with pytest.raises(ValueError, match="result_max_bytes"):
        history.result_bytes("x" * 200, 100)
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        history.result_bytes({1, 2}, 100)
