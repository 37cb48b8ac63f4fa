"""Hash chains (schemas/chain.py): what `jobstream audit verify` detects and what it does not."""

from __future__ import annotations

from typing import Any

import pytest

from jobstream.schemas.chain import GENESIS, Verifier, seal


def _chain(n: int, prev: str = GENESIS) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        rec = seal({"n": i, "who": "ops", "counts": {"matched": i}}, prev)
        prev = rec["chain"]["hash"]
        out.append(rec)
    return out


def _verify(records: list[Any], **kw: Any) -> Verifier:
    v = Verifier(**kw)
    for offset, rec in enumerate(records):
        v.feed(offset, rec)
    v.finish()
    return v


def test_an_intact_chain_verifies_and_reports_its_head() -> None:
    recs = _chain(5)
    v = _verify(recs)
    assert v.ok and v.records == 5 and v.first_chained == 0
    assert (v.head_offset, v.head) == (4, recs[-1]["chain"]["hash"])


def test_a_changed_record_is_named_once() -> None:
    recs = _chain(5)
    recs[2] = {**recs[2], "who": "mallory"}
    v = _verify(recs)
    assert [(p.offset, "changed" in p.reason) for p in v.problems] == [(2, True)]


def test_a_removed_record_breaks_the_next_link() -> None:
    recs = _chain(5)
    del recs[2]
    v = _verify(recs)
    assert [p.offset for p in v.problems] == [2] and "removed" in v.problems[0].reason


def test_reordered_records_are_detected() -> None:
    recs = _chain(5)
    recs[1], recs[2] = recs[2], recs[1]
    assert not _verify(recs).ok


def test_a_dropped_first_record_is_detected_unless_retention_took_it() -> None:
    recs = _chain(4)
    assert [p.offset for p in _verify(recs[1:]).problems] == [0]
    assert _verify(recs[1:], starts_mid_chain=True).ok


def test_records_before_chaining_are_counted_not_failed() -> None:
    legacy: list[Any] = [{"command": "replay"}, {"command": "export"}]
    v = _verify(legacy + _chain(3, prev="f" * 64))
    assert v.ok and v.unchained == 2 and v.first_chained == 2


def test_an_unchained_record_after_chaining_started_is_a_problem() -> None:
    recs: list[Any] = _chain(3)
    recs.insert(2, {"command": "replay"})
    recs.insert(3, None)  # not JSON at all
    v = _verify(recs)
    assert [p.offset for p in v.problems] == [2, 3]


def test_a_rewritten_chain_is_caught_by_an_anchor_kept_earlier() -> None:
    recs = _chain(4)
    anchor = {3: recs[3]["chain"]["hash"]}
    forged = _chain(4)  # same shape, recomputed from scratch ...
    evil = {"n": 1, "who": "mallory", "counts": {"matched": 1}}
    forged[1] = seal(evil, forged[0]["chain"]["hash"])
    prev = forged[1]["chain"]["hash"]
    for i in (2, 3):  # ... and every later hash rewritten to match
        forged[i] = seal({k: v for k, v in forged[i].items() if k != "chain"}, prev)
        prev = forged[i]["chain"]["hash"]
    assert _verify(forged).ok  # a chain alone cannot see a full rewrite
    v = _verify(forged, anchors=anchor)
    assert [p.offset for p in v.problems] == [3] and "anchor" in v.problems[0].reason


def test_an_anchor_whose_record_is_gone_is_reported() -> None:
    v = _verify(_chain(2), anchors={7: "a" * 64})
    assert [p.offset for p in v.problems] == [7]


@pytest.mark.parametrize("chain", [{"prev": GENESIS}, {"prev": 1, "hash": "x"}, "nope"])
def test_a_malformed_chain_field_is_a_problem_not_a_crash(chain: Any) -> None:
    recs: list[Any] = _chain(2)
    recs.append({"n": 9, "chain": chain})
    recs.extend(_chain(1, prev=recs[1]["chain"]["hash"]))
    v = _verify(recs)
    assert [p.offset for p in v.problems] == [2]


def test_seal_hashes_what_a_reader_decodes() -> None:
    """Tuples become lists and int keys strings in JSON; the hash must be of that form."""
    import json

    rec = seal({"t": (1, 2), "d": {1: "a"}}, GENESIS)
    assert _verify([json.loads(json.dumps(rec))]).ok


def _interleaved(n: int) -> list[dict[str, Any]]:
    """Two writers (say the owners of T[3] and T.retry.10s[3]) sharing one history partition."""
    heads = {"a": GENESIS, "b": GENESIS}
    out = []
    for i in range(n):
        stream = "ab"[i % 3 == 0]
        rec = seal({"i": i}, heads[stream], stream=stream)
        heads[stream] = rec["chain"]["hash"]
        out.append(rec)
    return out


def test_interleaved_streams_each_verify() -> None:
    v = _verify(_interleaved(9))
    assert v.ok and set(v.heads) == {"a", "b"}


def test_a_record_removed_from_one_stream_is_found() -> None:
    recs = _interleaved(9)
    del recs[3]  # a "b" record
    v = _verify(recs)
    assert [p.offset for p in v.problems] == [5] and "stream b" in v.problems[0].reason


def test_a_record_moved_to_another_stream_is_changed_content() -> None:
    recs = _interleaved(6)
    recs[1] = {**recs[1], "chain_stream": "b"}
    assert not _verify(recs).ok
