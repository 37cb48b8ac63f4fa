"""Hash chains over the records of one topic partition (the audit trail, job history).

Each record carries `chain: {"prev": <hash of the previous record>, "hash": <its own>}`, where a
record's hash is SHA-256 over the previous hash and the canonical JSON of the record without its
`chain` field. A partition with several writers at once (a job type's history partition p is
written by the owners of partition p of T and of each retry tier) holds one chain per writer's
stream: the record's `chain_stream` field names it, and `prev` is that stream's previous record.
Walking a partition from its first record then detects a record that was changed (its hash no
longer matches), removed or reordered (the next record's `prev` no longer matches).
A chain proves integrity relative to a hash seen earlier: someone who can rewrite the whole
partition can rewrite every hash too, so `jobstream audit verify` prints the head hash, to be
kept elsewhere and checked later with `--anchor`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

GENESIS = "0" * 64  # the `prev` of a partition's first chained record
CHAIN_FIELD = "chain"


# Made once: json.dumps with options builds a new encoder per call (a worker seals one record
# per job).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode
_STRICT = json.JSONEncoder(allow_nan=False).encode


def canonical(content: dict[str, Any]) -> bytes:
    """One byte form per content: sorted keys, no spaces, UTF-8 (RFC 8785-like for JSON data)."""
    return _CANONICAL(_unchained(content)).encode()


def fast_canonical(content: dict[str, Any]) -> bytes | None:
    """The same form by orjson (7-8x faster), None where orjson cannot write the content (an
    integer beyond 64 bits). It differs from canonical() only in how it writes some floats
    (1e-05 is 0.00001): each is one byte form of the content, and a reader accepts either."""
    try:
        return orjson.dumps(_unchained(content), option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None


def _unchained(content: dict[str, Any]) -> dict[str, Any]:
    if CHAIN_FIELD in content:
        return {k: v for k, v in content.items() if k != CHAIN_FIELD}
    return content


def _hash(prev: str, body: bytes) -> str:
    return hashlib.sha256(prev.encode() + b"\n" + body).hexdigest()


def link(prev: str, content: dict[str, Any]) -> str:
    return _hash(prev, canonical(content))


def links(prev: str, content: dict[str, Any], own: str) -> bool:
    """Whether `own` is the hash of `content` after `prev`, in either byte form."""
    fast = fast_canonical(content)
    if fast is not None and _hash(prev, fast) == own:
        return True
    return link(prev, content) == own


def seal(content: dict[str, Any], prev: str, stream: str | None = None,
         plain: bool = False) -> dict[str, Any]:
    """The record with its chain field, linked after the record whose hash is `prev` (in
    `stream`, when the partition holds several). The content goes through JSON first, so what is
    hashed is what a reader will decode; the stream name is part of the hashed content.
    `plain`: the caller vouches that the content is JSON already (str keys; str, int, float,
    bool, None, lists, tuples and such dicts as values), which JSON gives back as it is: the
    round trip is skipped (one dumps and loads per record)."""
    content = dict(content) if plain else json.loads(_STRICT(content))
    if stream is not None:
        content["chain_stream"] = stream
    return {**content, CHAIN_FIELD: {"prev": prev, "hash": link(prev, content)}}


def seal_bytes(content: dict[str, Any], prev: str, stream: str | None = None,
               plain: bool = False) -> tuple[bytes, str]:
    """seal, encoded: (the sealed record's JSON bytes, its hash), with one JSON encode. The bytes
    are the canonical form that is hashed (sorted keys, no spaces, UTF-8) with the chain field
    appended as the last key, so the hash is the one seal gives and a reader's links() over
    the decoded record finds it again."""
    content = dict(content) if plain else json.loads(_STRICT(content))
    if stream is not None:
        content["chain_stream"] = stream
    content.pop(CHAIN_FIELD, None)
    body = fast_canonical(content) or _CANONICAL(content).encode()
    own = _hash(prev, body)
    # prev and the hash are hex (or come from a chain field, JSON-clean): no escaping needed
    tail = f'"{CHAIN_FIELD}":{{"prev":{json.dumps(prev)},"hash":"{own}"}}}}'.encode()
    return (body[:-1] + (b"," if len(body) > 2 else b"") + tail), own


def stream_of(record: Any) -> str:
    s = record.get("chain_stream") if isinstance(record, dict) else None
    return s if isinstance(s, str) else ""


def head_of(record: Any) -> str | None:
    """The hash a record carries, None when it carries no (well-formed) chain."""
    chain = record.get(CHAIN_FIELD) if isinstance(record, dict) else None
    h = chain.get("hash") if isinstance(chain, dict) else None
    return h if isinstance(h, str) and len(h) == 64 else None


@dataclass
class Problem:
    offset: int
    reason: str


@dataclass
class Verifier:
    """Feed one partition's records in offset order; `problems` says where the chain breaks.

    Records before the first chained one (written before chaining existed) are counted as
    `unchained`; after it, every record must be chained. When `starts_mid_chain` (the
    partition's oldest records expired by retention), the first record's `prev` cannot be
    checked and is taken as given."""

    starts_mid_chain: bool = False
    anchors: dict[int, str] = field(default_factory=dict)  # offset -> hash seen earlier
    records: int = 0
    events: int = 0  # what the records hold: a T.history batch record holds several
    unchained: int = 0
    first_chained: int | None = None
    head: str | None = None  # of the last chained record, whatever its stream
    head_offset: int | None = None
    problems: list[Problem] = field(default_factory=list)
    heads: dict[str, str] = field(default_factory=dict)  # stream -> its last hash
    _anchors_seen: set[int] = field(default_factory=set)
    _resync: bool = False  # after a record without a usable hash: take the next prev as given

    def feed(self, offset: int, record: Any) -> None:
        self.records += 1
        held = record.get("events") if isinstance(record, dict) and \
            record.get("event") == "batch" else None
        self.events += len(held) if isinstance(held, list) else 1
        chain = record.get(CHAIN_FIELD) if isinstance(record, dict) else None
        if chain is None and self.first_chained is None:
            self.unchained += 1
            return
        if not (isinstance(chain, dict) and isinstance(chain.get("prev"), str)
                and head_of(record) is not None):
            self._problem(offset, "not chained (no well-formed chain field) after chained records"
                          if self.first_chained is not None else "malformed chain field")
            self._resync = self.first_chained is not None
            return
        prev, own, stream = chain["prev"], chain["hash"], stream_of(record)
        if self.first_chained is None:
            self.first_chained = offset
        if stream in self.heads:
            expected = prev if self._resync else self.heads[stream]
        else:  # a stream's first record: from the start, unless the start is gone or unchained
            expected = prev if self.starts_mid_chain or self.unchained else GENESIS
        self._resync = False
        if prev != expected:
            where = f" of stream {stream}" if stream else ""
            self._problem(offset, f"prev {prev[:12]}... does not match the hash before it"
                          f"{where} ({expected[:12]}...): a record before it was removed, "
                          "changed or reordered")
        if not links(prev, record, own):
            self._problem(offset, "its content does not match its hash: the record was changed")
        if offset in self.anchors:
            self._anchors_seen.add(offset)
            if self.anchors[offset] != own:
                self._problem(offset, f"hash differs from the anchor {self.anchors[offset][:12]}"
                              "...: the chain up to here was rewritten")
        self.head, self.head_offset = own, offset
        self.heads[stream] = own

    def finish(self) -> None:
        for offset in sorted(set(self.anchors) - self._anchors_seen):
            self._problem(offset, "the anchor's record is not in the partition any more")

    def _problem(self, offset: int, reason: str) -> None:
        # The walk goes on from this record's own hash, so one break is reported once.
        self.problems.append(Problem(offset, reason))

    @property
    def ok(self) -> bool:
        return not self.problems
