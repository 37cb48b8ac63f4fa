"""T.history's stored form (schemas/chain.seal_bytes): one encode, the canonical JSON that is
hashed with the chain field appended last. The hash is the one chain.seal defines, so chains
that mix records written before the change (insertion order, compact) and after it verify."""

from __future__ import annotations

import json
from typing import Any

from jobstream.schemas import history
from jobstream.schemas.chain import GENESIS, Verifier, link, seal, seal_bytes
from jobstream.schemas.lifecycle import fold

POLICY = history.Policy((1.0, 10.0), 3, 30.0)
_OLD_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _attempt(n: int, **kw: Any) -> dict[str, Any]:
    return history.attempt(job_id="j1", job_type="t.echo", attempt=n, worker="w\u00e9",
                           started_at=1_000 + n, finished_at=2_000 + n, outcome="retried",
                           policy=POLICY, source=("jobs.t", 3, n), trace_id="a" * 32, **kw)


def _old_encode(rec: dict[str, Any], prev: str, stream: str) -> tuple[bytes, str]:
    """How history.encode stored a record before: sealed, then encoded in insertion order."""
    sealed = seal(rec, prev, stream=stream)
    return _OLD_COMPACT(sealed).encode(), sealed["chain"]["hash"]


def test_stored_form_is_sorted_keys_then_the_chain_with_seals_hash() -> None:
    rec = _attempt(1, error=("transient", "OSError", "caf\u00e9 \"down\""))
    value, own = history.encode(rec, GENESIS, "jobs.t:3", plain=True)
    back = json.loads(value)
    sealed = seal(rec, GENESIS, stream="jobs.t:3")
    assert back == sealed and own == sealed["chain"]["hash"]
    keys = list(back)
    assert keys[-1] == "chain" and keys[:-1] == sorted(keys[:-1])
    assert list(back["policy"]) == sorted(back["policy"])  # nested objects sorted too
    assert "caf\u00e9".encode() in value  # UTF-8, not \u escapes
    assert link(GENESIS, back) == own  # what a reader checks (the json module's form)


def test_not_plain_content_goes_through_json_first() -> None:
    rec = _attempt(2, result={"t": (1, 2), "d": {1: "a"}}, has_result=True)
    value, own = history.encode(rec, GENESIS, "jobs.t:3")
    back = json.loads(value)
    assert back["result"] == {"t": [1, 2], "d": {"1": "a"}}
    assert own == seal(rec, GENESIS, stream="jobs.t:3")["chain"]["hash"]
    assert link(GENESIS, back) == own


def test_a_chain_field_in_the_content_is_replaced_and_empty_content_is_valid_json() -> None:
    value, own = seal_bytes({"chain": {"prev": "x", "hash": "y"}, "n": 1}, GENESIS)
    assert json.loads(value) == seal({"n": 1}, GENESIS)
    value, own = seal_bytes({}, GENESIS)
    assert json.loads(value) == {"chain": {"prev": GENESIS, "hash": own}}


def test_old_format_records_followed_by_new_ones_verify() -> None:
    stream, prev, values = "jobs.t:3", GENESIS, []
    for n in range(1, 3):  # written by a worker before the change
        value, prev = _old_encode(_attempt(n), prev, stream)
        values.append(value)
    for n in range(3, 6):  # after it, continuing the same chain head
        value, prev = history.encode(_attempt(n), prev, stream, plain=True)
        values.append(value)
    assert values[0] != history.encode(_attempt(1), GENESIS, stream, plain=True)[0]  # bytes differ
    v = Verifier()
    for offset, value in enumerate(values):
        v.feed(offset, json.loads(value))
    v.finish()
    assert v.ok and v.records == 5 and v.head == prev, v.problems
    # ...and a changed new-format record is still caught
    tampered = json.loads(values[3])
    tampered["attempt"] = 9
    v = Verifier()
    for offset, value in enumerate(values):
        v.feed(offset, tampered if offset == 3 else json.loads(value))
    assert [p.offset for p in v.problems] == [3]


def test_readers_fold_a_mixed_history() -> None:
    stream = "jobs.t:3"
    old, prev = _old_encode(_attempt(1, error=("transient", "OSError", "boom")), GENESIS, stream)
    rec = history.attempt(job_id="j1", job_type="t.echo", attempt=2, worker="w", started_at=5,
                          finished_at=9, outcome="succeeded", policy=POLICY,
                          source=("jobs.t", 3, 2), result={"ok": True}, has_result=True)
    new, _ = history.encode(rec, prev, stream)
    st = fold("j1", "t.echo", [history.decode(old), history.decode(new)])
    assert st.state == "succeeded" and st.attempts == 2 and st.result == {"ok": True}, st
    assert st.trace_id == "a" * 32 and len(st.events) == 2


def test_a_float_the_two_byte_forms_write_differently_verifies_either_way() -> None:
    """Written with orjson (seal_bytes) or with the json module (seal, records of older
    versions): 1e-05 is `0.00001` in one and `1e-05` in the other, and both verify."""
    rec = history.event("progress", job_id="j1", job_type="t.echo", at=5, fraction=1e-05)
    fast, own_fast = history.encode(rec, GENESIS, "jobs.t:3", plain=True)
    slow = seal(rec, GENESIS, stream="jobs.t:3")
    assert b"0.00001" in fast and own_fast != slow["chain"]["hash"]
    for offset, back in enumerate((json.loads(fast), slow)):
        v = Verifier()
        v.feed(offset, back)
        assert v.ok, v.problems
    changed = json.loads(fast)
    changed["fraction"] = 2e-05
    v = Verifier()
    v.feed(0, changed)
    assert [p.offset for p in v.problems] == [0]


def test_an_integer_beyond_64_bits_is_written_and_verified_by_the_json_module() -> None:
    rec = _attempt(1, result={"n": 2**70}, has_result=True)
    value, own = history.encode(rec, GENESIS, "jobs.t:3")
    back = history.decode(value)
    assert back["result"] == {"n": 2**70} and back["chain"]["hash"] == own
    v = Verifier()
    v.feed(0, json.loads(value))
    assert v.ok, v.problems


def test_a_batch_holds_its_events_in_order_and_any_change_inside_breaks_its_hash() -> None:
    events = [_attempt(n) for n in range(1, 4)]
    events[1]["job_id"] = "j2"
    value, own = history.encode(history.batch(events), GENESIS, "jobs.t:3", plain=True)
    back = history.decode(value)
    assert [e["job_id"] for e in history.events(back)] == ["j1", "j2", "j1"]
    assert history.events(back) == events and back["at"] == events[-1]["at"]
    single = history.decode(history.encode(events[0], GENESIS, "jobs.t:3", plain=True)[0])
    assert history.events(single) == [{k: v for k, v in single.items()}]
    v = Verifier()
    v.feed(0, back)
    assert v.ok and v.head == own
    for tamper in ("change", "remove", "swap"):
        forged = json.loads(value)
        evs = forged["events"]
        if tamper == "change":
            evs[2]["outcome"] = "succeeded"
        elif tamper == "remove":
            del evs[1]
        else:
            evs[0], evs[1] = evs[1], evs[0]
        v = Verifier()
        v.feed(0, forged)
        assert [p.offset for p in v.problems] == [0], tamper


def test_a_batch_without_events_or_with_a_foreign_event_is_not_a_history_record() -> None:
    import pytest

    for bad in ({"event": "batch", "at": 1, "events": []},
                {"event": "batch", "at": 1, "events": [{"event": "nope", "job_id": "j", "at": 1}]},
                {"event": "batch", "at": 1, "events": "x"}):
        with pytest.raises(history.HistoryError):
            history.decode(json.dumps(bad).encode())
