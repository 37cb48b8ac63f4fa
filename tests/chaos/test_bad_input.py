"""Scenario 6: a flood of malformed records among good ones: random bytes, truncated Avro, an
unknown schema version, missing headers, an unknown job type. Every bad record is
dead-lettered once with the right category (decode or unknown_job_type) and its original
bytes; every good job succeeds; no bad record runs a handler."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

from jobstream.schemas import wire
from jobstream.schemas.registry import DecodeError
from tests.chaos.books import (
    Fleet,
    Workload,
    balanced,
    conclude,
    headers,
    origin_identity,
    sized,
    wait_quiescent,
)
from tests.support.harness import Stack

KINDS = ["random_bytes", "truncated", "unknown_version", "missing_headers", "unknown_job_type"]
REQUIRED = [wire.JOB_ID, wire.JOB_TYPE, wire.SCHEMA_VERSION]
Record = tuple[int | None, bytes | None, bytes | None, list[tuple[str, bytes]]]


def _set(h: list[tuple[str, bytes]], name: str, value: str) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in h if k != name] + [(name, value.encode())]


def bad_record(kind: str, rng: random.Random, value: bytes, h: list[tuple[str, bytes]],
               registry: Any, job_type: str) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """(designed category, value, headers) of one malformed record built from a good one."""
    if kind == "random_bytes":
        junk = rng.randbytes(rng.randint(0, 80))
        try:  # random bytes that happen to decode are made invalid (trailing byte)
            registry.decode(job_type, 1, junk)
            junk += b"\x00"
        except DecodeError:
            pass
        return "decode", junk, h
    if kind == "truncated":
        return "decode", value[: rng.randrange(len(value))], h
    if kind == "unknown_version":
        return "decode", value, _set(h, wire.SCHEMA_VERSION, str(rng.randint(2, 10**6)))
    if kind == "missing_headers":
        drop = set(rng.sample(REQUIRED, rng.randint(1, len(REQUIRED))))
        return "decode", value, [(k, v) for k, v in h if k not in drop]
    assert kind == "unknown_job_type"
    return "unknown_job_type", value, _set(h, wire.JOB_TYPE, f"chaos.nosuch{rng.randint(0, 99)}")


def test_bad_input_flood_is_dead_lettered_good_jobs_succeed(stack_factory) -> None:  # type: ignore[no-untyped-def]
    n_bad = sized(1_000, 4_000, 10_000)
    n_good = sized(1_000, 4_000, 10_000)
    stack: Stack = stack_factory(worker={"max_in_flight": 128})
    rng = random.Random(6)
    plan = ["bad"] * n_bad + ["ok"] * n_good
    rng.shuffle(plan)  # bad and good interleaved, in every partition
    records: list[tuple[str, str, Record]] = []  # (designed outcome, job id or kind, record)
    with stack.publisher() as pub:
        registry = pub.registry
        for i, what in enumerate(plan):
            key = f"k{i % 500}"
            _, jid, value, h = pub.build(stack.job_type, {"seq": i, "behaviour": "ok"}, key=key)
            part = rng.randrange(6)
            if what == "ok":
                records.append(("ok", jid, (part, key.encode(), value, h)))
                continue
            kind = rng.choice(KINDS)
            cat, v, hh = bad_record(kind, rng, value, h, registry, stack.job_type)
            if kind in ("random_bytes", "truncated"):  # the generator's own check
                try:
                    registry.decode(stack.job_type, 1, v)
                    raise AssertionError(f"a {kind} record decodes: {v!r}")
                except DecodeError:
                    pass
            records.append((cat, kind, (part, key.encode(), v, hh)))
    kinds = Counter(k for o, k, _ in records if o != "ok")
    wl = Workload()
    started = time.monotonic()
    where = stack.produce_raw([r for _, _, r in records])
    for (outcome, jid, _), (p, o) in zip(records, where, strict=True):
        if outcome == "ok":
            wl.ok.add(jid)
        else:
            wl.poison[f"{p}:{o}"] = outcome
    wl.published = len(records)
    assert len(wl.poison) == n_bad and len(wl.ok) == n_good, (len(wl.poison), len(wl.ok))
    fleet = Fleet(stack)
    for _ in range(2):
        fleet.start()
    quiet = wait_quiescent(stack, fleet, wl, timeout=sized(120, 300, 600),
                           identity=origin_identity)
    extra = []
    sent = {f"{p}:{o}": r for (_, _, r), (p, o) in zip(records, where, strict=True)}
    for m in stack.read_topic(stack.topics.dlq):
        rec = sent.get(origin_identity(m))
        if rec is not None and (m.value(), m.key(), m.partition()) != (rec[2], rec[1], rec[0]):
            extra.append(f"dead letter {origin_identity(m)} does not keep the original record")
        if not headers(m).get(wire.ERROR_MESSAGE):
            extra.append(f"dead letter {origin_identity(m)} has no error message")
    bad_ran = {r["job_id"] for r in stack.runs()} - wl.ok
    if bad_ran:
        extra.append(f"{len(bad_ran)} malformed records ran a handler: {sorted(bad_ran)[:5]}")
    books = conclude(
        "bad_input", stack, fleet, wl, started, {"malformed": dict(sorted(kinds.items()))},
        quiet, identity=origin_identity, extra=extra[:20],
    )
    assert not books.violations, balanced(books)
