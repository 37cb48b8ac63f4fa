"""Failure handling against the real broker and real worker processes: retry tiers, delay
accuracy, poison inputs, the DLQ, RetryAfter, strict ordering, rate limit and timeouts."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from jobstream.consumers.runtime.ledger import routed_key
from jobstream.schemas import wire
from jobstream.schemas.registry import DecodeError
from tests.support.harness import Stack

JT = "test.echo"
Record = tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]] | None]


def hdrs(msg: Any) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in msg.headers() or []}


def wait_topic(stack: Stack, topic: str, n: int, timeout: float = 30) -> list[Any]:
    got: list[Any] = []

    def enough() -> bool:
        got[:] = stack.read_topic(topic)
        return len(got) >= n

    stack.wait_for(enough, timeout, f"{n} records in {topic}")
    return got


def build(pub: Any, seq: int, key: str, behaviour: str = "ok") -> tuple[str, bytes, list]:
    _topic, jid, value, headers = pub.build(JT, {"seq": seq, "behaviour": behaviour}, key=key)
    return jid, value, headers


def set_header(headers: list, name: str, value: str | None) -> list:
    out = [(k, v) for k, v in headers if k != name]
    return out if value is None else [*out, (name, value.encode())]


def alive(stack: Stack) -> None:
    assert all(p.poll() is None for p in stack.procs), f"a worker died; logs in {stack.tmp}"


def run_ids(stack: Stack) -> set[str]:
    return {r["job_id"] for r in stack.runs()}


# 1 -------------------------------------------------------------------------------------------

def test_transient_failure_walks_the_tiers_then_succeeds(stack_factory) -> None:
    stack: Stack = stack_factory()
    t = stack.topics
    [jid] = stack.publish_many([({"seq": 0, "behaviour": "fail_until:3"}, "k1")])
    stack.start_worker()
    runs = stack.wait_runs(1, timeout=40)
    assert [(r["job_id"], r["attempt"], r["topic"]) for r in runs] == [(jid, 3, t.retries[1])]

    [main] = stack.read_topic(t.main)
    [r1] = wait_topic(stack, t.retries[0], 1)
    [r2] = wait_topic(stack, t.retries[1], 1)
    h1, h2 = hdrs(r1), hdrs(r2)
    assert (h1[wire.ATTEMPT], h2[wire.ATTEMPT]) == ("2", "3")
    assert h1[wire.FIRST_FAILED_AT] == h2[wire.FIRST_FAILED_AT]
    assert int(h2[wire.FAILED_AT]) > int(h1[wire.FAILED_AT]) >= int(h1[wire.FIRST_FAILED_AT])
    for h in (h1, h2):
        assert h[wire.JOB_ID] == jid
        assert h[wire.ERROR_CATEGORY] == "transient"
        assert h[wire.ERROR_CLASS] == "ConnectionError"
        assert "downstream unavailable" in h[wire.ERROR_MESSAGE]
        assert "ConnectionError" in h[wire.ERROR_STACK]
        assert int(h[wire.NOT_BEFORE]) > int(h[wire.FAILED_AT])
        assert h[wire.WORKER]
    # origin: where each failed attempt was read from; the partition is kept along the way
    assert (h1[wire.ORIGIN_TOPIC], h1[wire.ORIGIN_PARTITION], h1[wire.ORIGIN_OFFSET]) == (
        t.main, str(main.partition()), str(main.offset()))
    assert (h2[wire.ORIGIN_TOPIC], h2[wire.ORIGIN_PARTITION], h2[wire.ORIGIN_OFFSET]) == (
        t.retries[0], str(r1.partition()), str(r1.offset()))
    assert main.partition() == r1.partition() == r2.partition()
    assert main.value() == r1.value() == r2.value() and main.key() == r1.key() == r2.key()
    assert hdrs(main)[wire.ENQUEUED_AT] == h1[wire.ENQUEUED_AT] == h2[wire.ENQUEUED_AT]
    assert stack.read_topic(t.dlq) == []
    # The completion, and a routing mark for each record that was retried (by its position)
    stack.wait_for(lambda: len(stack.ledger_records()) >= 3, 30, "3 ledger records")
    ledger = stack.ledger_records()
    assert sorted((m.key(), m.partition()) for m in ledger) == sorted([
        (jid.encode(), main.partition()),
        (routed_key(t.main, main.partition(), main.offset()).encode(), main.partition()),
        (routed_key(t.retries[0], r1.partition(), r1.offset()).encode(), main.partition()),
    ])


# 2 -------------------------------------------------------------------------------------------

def test_retry_runs_never_start_before_not_before(stack_factory) -> None:
    stack: Stack = stack_factory()
    n = 60
    ids = stack.publish_many([({"seq": 0, "behaviour": "fail_until:2"}, f"k{i}") for i in range(n)])
    stack.start_worker()
    runs = stack.wait_runs(n, timeout=45)
    assert {r["job_id"] for r in runs} == set(ids)
    assert len({r["job_id"]: r for r in runs}) == len(runs)
    parts = {m.partition() for m in stack.read_topic(stack.topics.retries[0])}
    assert len(parts) >= 4, parts  # the jobs really were spread over the partitions
    late = []
    for r in runs:
        assert r["topic"] == stack.topics.retries[0] and r["attempt"] == 2
        nb = int(r["not_before"])
        assert r["start"] * 1000 >= nb, f"ran {nb - r['start'] * 1000:.0f} ms early: {r}"
        late.append(r["start"] * 1000 - nb)
    assert max(late) < 10_000, f"retries ran up to {max(late):.0f} ms late"


# 3 -------------------------------------------------------------------------------------------

def test_poison_inputs_are_dead_lettered_and_never_stall(stack_factory) -> None:
    stack: Stack = stack_factory()
    with stack.publisher() as pub:
        registry = pub.registry
        junk = random.Random(7).randbytes(64)
        with pytest.raises(DecodeError):
            registry.decode(JT, 1, junk)
        # near the size limit: a valid job that fails permanently (its DLQ record adds a
        # stack), and trailing bytes that make a record almost 1 MB
        _, _, big, big_h = pub.build(
            JT, {"seq": 0, "behaviour": "permanent", "secret": "x" * 999_000}, key="p")
        goods: list[tuple[str, Record]] = []
        poison: list[tuple[str, Record]] = []
        records: list[tuple[str, Record]] = []  # goods and poison interleaved per partition
        for part in (0, 1):
            _, value, h = build(pub, 0, "p")
            cases: list[tuple[str, bytes | None, list | None]] = [
                ("decode", junk, h),  # random bytes, valid headers
                ("decode", value[:-3], h),  # truncated Avro
                ("decode", value, set_header(h, wire.SCHEMA_VERSION, "7")),  # unknown version
                ("decode", value, None),  # no headers at all
                ("unknown_job_type", value, set_header(h, wire.JOB_TYPE, "test.nosuch")),
                ("decode", value + b"\x02\x00extra", h),  # trailing bytes
                ("decode", value + b"\x00" * 999_300, h),  # trailing bytes up to ~1 MB
                ("permanent", big, big_h) if part == 0 else ("decode", b"", h),
            ]
            for seq, (cat, v, hh) in enumerate(cases):
                jid, gv, gh = build(pub, seq, f"g{part}-{seq}")
                goods.append((jid, (part, f"g{part}-{seq}".encode(), gv, gh)))
                poison.append((cat, (part, b"p", v, hh)))  # all poison shares one key
                records += [("good", goods[-1][1]), poison[-1]]
            jid, gv, gh = build(pub, 99, f"g{part}-end")
            goods.append((jid, (part, f"g{part}-end".encode(), gv, gh)))
            records.append(("good", goods[-1][1]))
    where = stack.produce_raw([r for _, r in records])
    proc = stack.start_worker()
    stack.wait_for(lambda: run_ids(stack) >= {g for g, _ in goods}, 40, "every good job run")
    dlq = wait_topic(stack, stack.topics.dlq, len(poison))
    assert len(dlq) == len(poison)
    expected = {
        (str(p), str(o)): (cat, rec)
        for (cat, rec), (p, o) in zip(records, where, strict=True) if cat != "good"
    }
    for m in dlq:
        h = hdrs(m)
        cat, rec = expected.pop((h[wire.ORIGIN_PARTITION], h[wire.ORIGIN_OFFSET]))
        assert h[wire.ERROR_CATEGORY] == cat, (h[wire.ERROR_MESSAGE], rec[3])
        assert h[wire.ORIGIN_TOPIC] == stack.topics.main
        assert m.partition() == rec[0]
        assert m.value() == rec[2], "the DLQ record must keep the original bytes"
        assert m.key() == rec[1]
        assert h[wire.ERROR_MESSAGE]
    assert expected == {}
    time.sleep(0.5)
    assert proc.poll() is None
    assert len(stack.runs()) == len(goods)  # nothing bad ran, nothing good ran twice
    assert stack.read_topic(stack.topics.retries[0]) == []


# 4 -------------------------------------------------------------------------------------------

_KINDS = ["trailing", "truncated", "version", "missing", "job_type", "attempt", "not_before",
          "random", "tombstone"]
# Two small choices per record keep 1,000 records inside hypothesis's per-example budget; the
# record's bad bytes and headers are derived from the drawn seed.
bad_record = st.tuples(st.sampled_from(_KINDS), st.integers(0, 2**32 - 1))
_BAD_NUMBERS = ["0", "-1", "", "1.0", "v1", "0x1", "one", "1e3", "99999999999999999999999x"]


def _make_bad(kind: str, seed: int, value: bytes, h: list, reg: Any) -> tuple[str, Any, list]:
    """(expected DLQ category, value, headers) of one bad record."""
    rng = random.Random(seed)
    if kind == "trailing":
        return "decode", value + rng.randbytes(1 + seed % 40), h
    if kind == "truncated":
        return "decode", value[: seed % len(value)], h
    if kind == "version":
        v = rng.choice([str(rng.randint(2, 10**6)), str(-rng.randint(0, 10**6)), *_BAD_NUMBERS])
        return "decode", value, set_header(h, wire.SCHEMA_VERSION, v)
    if kind == "missing":
        names = [wire.JOB_ID, wire.JOB_TYPE, wire.SCHEMA_VERSION]
        drop = [n for i, n in enumerate(names) if (1 + seed % 7) >> i & 1]
        return "decode", value, [(k, v) for k, v in h if k not in drop]
    if kind == "job_type":
        name = "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(1 + seed % 12))
        return "unknown_job_type", value, set_header(h, wire.JOB_TYPE, name)
    if kind == "attempt":
        v = rng.choice([str(-rng.randint(0, 1000)), *_BAD_NUMBERS])
        return "decode", value, set_header(h, wire.ATTEMPT, v)
    if kind == "not_before":
        return "decode", value, set_header(h, wire.NOT_BEFORE, rng.choice(_BAD_NUMBERS[1:]))
    if kind == "random":
        junk = rng.randbytes(seed % 60)
        try:  # random bytes that happen to be a valid payload are made invalid
            reg.decode(JT, 1, junk)
            junk += b"\x00"
        except DecodeError:
            pass
        return "decode", junk, h
    assert kind == "tombstone"
    return "decode", None, h


@settings(max_examples=1, deadline=None, database=None, phases=[Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(bad=st.lists(bad_record, min_size=1000, max_size=1000))
def test_generated_bad_records_are_dead_lettered_good_ones_succeed(stack_factory, bad):
    # the first example hypothesis tries is the simplest one (all one kind): skip it, the
    # next is a genuinely random batch (the stack is only made for that one)
    assume(len({k for k, _ in bad}) >= 6)
    stack: Stack = stack_factory()
    records: list[tuple[str, Record]] = []
    good_ids: set[str] = set()
    with stack.publisher() as pub:
        bad_iter = iter(bad)
        for i in range(1200):
            key = f"k{i % 37}"
            jid, value, h = build(pub, i, key)
            if i % 6 == 5:  # 200 good ones spread through the stream
                good_ids.add(jid)
                records.append(("good", (i % 6, key.encode(), value, h)))
                continue
            kind, seed = next(bad_iter)
            cat, v, hh = _make_bad(kind, seed, value, h, pub.registry)
            records.append((cat, (seed % 6, key.encode(), v, hh)))
    assert sum(1 for c, _ in records if c != "good") == 1000 and len(good_ids) == 200
    print("\nbad kinds:", sorted(Counter(k for k, _ in bad).items()))
    where = stack.produce_raw([r for _, r in records])
    stack.start_worker()
    stack.wait_for(lambda: run_ids(stack) >= good_ids, 60, "200 good jobs run")
    dlq = wait_topic(stack, stack.topics.dlq, 1000, timeout=30)
    got = {(int(hdrs(m)[wire.ORIGIN_PARTITION]), int(hdrs(m)[wire.ORIGIN_OFFSET])):
           hdrs(m)[wire.ERROR_CATEGORY] for m in dlq}
    want = {pw: c for (c, _), pw in zip(records, where, strict=True) if c != "good"}
    assert len(dlq) == len(want) == 1000
    assert got == want
    assert run_ids(stack) == good_ids and len(stack.runs()) == 200
    alive(stack)


# 5 -------------------------------------------------------------------------------------------

def test_retry_after_picks_the_first_tier_at_least_that_long(stack_factory) -> None:
    stack: Stack = stack_factory(job={"retry_tiers": ["1s", "2s", "10s"]})
    t = stack.topics
    [jid] = stack.publish_many([({"seq": 0, "behaviour": "retry_after:5"}, "k")])
    stack.start_worker()
    [m] = wait_topic(stack, t.retries[2], 1)
    h = hdrs(m)
    assert m.topic() == t.retries[2] and t.retries[2].endswith(".retry.10s")
    assert (h[wire.JOB_ID], h[wire.ATTEMPT], h[wire.ERROR_CATEGORY]) == (jid, "2", "transient")
    delay_ms = int(h[wire.NOT_BEFORE]) - int(h[wire.FAILED_AT])
    assert 8_900 <= delay_ms <= 11_100, delay_ms  # 10 s +/- jitter, not 5 s, not 1 s
    assert stack.read_topic(t.retries[0]) == [] and stack.read_topic(t.retries[1]) == []
    assert stack.runs() == []


# 6 -------------------------------------------------------------------------------------------

def test_permanent_error_and_exhausted_attempts_end_in_the_dlq(stack_factory) -> None:
    stack: Stack = stack_factory(job={"max_attempts": 3})
    t = stack.topics
    perm, exhaust = stack.publish_many([({"seq": 0, "behaviour": "permanent"}, "a"),
                                        ({"seq": 0, "behaviour": "fail_until:99"}, "b")])
    stack.start_worker()
    [first] = wait_topic(stack, t.dlq, 1, timeout=20)
    h = hdrs(first)
    assert (h[wire.JOB_ID], h[wire.ATTEMPT], h[wire.ERROR_CATEGORY]) == (perm, "1", "permanent")
    assert h[wire.ERROR_CLASS] == "jobstream.consumers.errors.PermanentError"
    assert h[wire.ORIGIN_TOPIC] == t.main
    dlq = wait_topic(stack, t.dlq, 2, timeout=30)
    [m] = [m for m in dlq if hdrs(m)[wire.JOB_ID] == exhaust]
    h = hdrs(m)
    assert (h[wire.ATTEMPT], h[wire.ERROR_CATEGORY], h[wire.ORIGIN_TOPIC]) == (
        "3", "transient", t.retries[1])
    assert h[wire.ERROR_CLASS] == "ConnectionError" and "attempt 3" in h[wire.ERROR_MESSAGE]
    tiers = [stack.read_topic(x) for x in t.retries]
    assert [[hdrs(r)[wire.JOB_ID] for r in recs] for recs in tiers] == [[exhaust], [exhaust]]
    assert [hdrs(recs[0])[wire.ATTEMPT] for recs in tiers] == ["2", "3"]
    time.sleep(1)
    assert len(stack.read_topic(t.dlq)) == 2 and stack.runs() == []


# 7 -------------------------------------------------------------------------------------------

def test_strict_ordering_retries_in_place_and_holds_the_partition(stack_factory) -> None:
    stack: Stack = stack_factory(job={"ordering": "strict", "max_attempts": 5})
    assert stack.topics.retries == ()
    wave1: list[Record] = []
    wave2: list[Record] = []
    with stack.publisher() as pub:
        for p in range(6):
            for seq in range(10):
                _, v, h = build(pub, seq, f"k{p}", "fail_until:3" if seq == 3 else "ok")
                wave1.append((p, f"k{p}".encode(), v, h))
            for seq in range(5):
                _, v, h = build(pub, seq, f"w{p}")
                wave2.append((p, f"w{p}".encode(), v, h))
    stack.produce_raw(wave1)
    stack.start_worker()
    log = stack.tmp / "worker-0.log"
    stack.wait_for(lambda: log.exists() and log.read_text().count('"event": "failed"') >= 6, 30,
                   "each partition's seq 3 to fail once")
    stack.produce_raw(wave2)  # arrives while every partition is held
    wave2_at = time.time()
    runs = stack.wait_runs(90, timeout=40)
    assert len(runs) == 90
    by_key: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(runs, key=lambda r: r["start"]):
        by_key[r["key"]].append(r)
    for p in range(6):
        ks = by_key[f"k{p}"]
        assert [r["seq"] for r in ks] == list(range(10)), f"k{p} out of order"
        assert [r["attempt"] for r in ks] == [1, 1, 1, 3, 1, 1, 1, 1, 1, 1]
        held = ks[3]
        assert wave2_at < held["start"], "wave 2 came too late to test the hold"
        assert all(r["topic"] == stack.topics.main for r in ks)
        assert ks[4]["start"] >= held["end"]
        ws = by_key[f"w{p}"]
        assert [r["seq"] for r in ws] == list(range(5))
        early = [r for r in ws if r["start"] < held["start"]]
        assert not early, f"partition {p} ran {len(early)} jobs while seq 3 waited"
    assert stack.read_topic(stack.topics.dlq) == []


# 8 -------------------------------------------------------------------------------------------

def test_rate_limit_bounds_jobs_per_second(stack_factory) -> None:
    stack: Stack = stack_factory(job={"rate_limit": 20})
    n = 100
    stack.publish_many([({"seq": i, "behaviour": "ok"}, f"k{i}") for i in range(n)])
    stack.start_worker()
    runs = stack.wait_runs(n, timeout=40)
    starts = sorted(r["start"] for r in runs)
    span = starts[-1] - starts[0]
    rate = (n - 1) / span
    assert span >= 3.5, f"100 jobs in {span:.2f}s at rate_limit 20/s"
    assert rate <= 30, rate
    # no second-long window holds more than burst (20) + rate (20) jobs
    j = 0
    for i, s in enumerate(starts):
        while starts[j] < s - 1.0:
            j += 1
        assert i - j + 1 <= 50, f"{i - j + 1} jobs within one second"


# 9 -------------------------------------------------------------------------------------------

def test_hanging_sync_handler_times_out_to_the_dlq_others_flow(stack_factory) -> None:
    """A hung sync thread cannot be stopped: its job waits for it abandon_after_s past the
    timeout, then is dead-lettered as a timeout while the thread runs on (issue 26 item 7:
    logged as handler_abandoned and counted), and its slot is back from the timeout on."""
    stack: Stack = stack_factory(job={"timeout_s": 1, "max_attempts": 1, "abandon_after_s": 1},
                                 worker={"max_in_flight": 4})
    t = stack.topics
    [hung] = stack.publish_many([({"seq": 0, "behaviour": "hang"}, "h")])
    ids = stack.publish_many([({"seq": i, "behaviour": "ok"}, f"k{i}") for i in range(40)])
    stack.start_worker()
    [m] = wait_topic(stack, t.dlq, 1, timeout=30)
    h = hdrs(m)
    assert (h[wire.JOB_ID], h[wire.ERROR_CATEGORY], h[wire.ATTEMPT]) == (hung, "timeout", "1")
    assert h[wire.ERROR_CLASS] == "jobstream.consumers.errors.JobTimeout"
    stack.wait_for(lambda: run_ids(stack) >= set(ids), 30, "the other jobs")
    # after the timeout, its slot is back: more jobs (max_in_flight 4, so 4 more hangs) flow
    more = stack.publish_many([({"seq": 0, "behaviour": "hang"}, f"h{i}") for i in range(4)])
    more_ok = stack.publish_many([({"seq": i, "behaviour": "ok"}, f"m{i}") for i in range(20)])
    stack.wait_for(lambda: run_ids(stack) >= set(more_ok), 30, "jobs after 5 hangs")
    dlq = wait_topic(stack, t.dlq, 5, timeout=20)
    assert {hdrs(x)[wire.JOB_ID] for x in dlq} == {hung, *more}
    assert {hdrs(x)[wire.ERROR_CATEGORY] for x in dlq} == {"timeout"}
    assert hung not in run_ids(stack)
    abandoned = {e["job_id"] for e in _events(stack, "handler_abandoned")}
    assert abandoned == {hung, *more}
    assert stack.stop_all(timeout=30) == [0]


# 10 ------------------------------------------------------------------------------------------

def _events(stack: Stack, name: str) -> list[dict[str, Any]]:
    import json

    out = []
    for line in (stack.tmp / "worker-0.log").read_text().splitlines():
        if f'"{name}"' in line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return [e for e in out if e.get("event") == name]


def test_circuit_breaker_pauses_then_probes_and_resumes(stack_factory) -> None:
    stack: Stack = stack_factory(
        job={"retry_tiers": ["3s"], "max_attempts": 10,
             "circuit_breaker": {"failure_ratio": 0.5, "window_s": 10, "min_calls": 5,
                                 "cooldown_s": 1.5}},
        worker={"max_in_flight": 4},
    )
    down = stack.tmp / "downstream-down"
    down.touch()
    n = 200
    ids = stack.publish_many(
        [({"seq": i, "behaviour": f"downstream:{down}"}, f"k{i}") for i in range(n)]
    )
    stack.start_worker()
    stack.wait_for(lambda: bool(_events(stack, "circuit_open")), 30, "the breaker to open")
    time.sleep(6)  # the downstream stays down: without a breaker all 200 would fail by now
    failed_while_down = len(stack.read_topic(stack.topics.retries[0]))
    assert _events(stack, "circuit_half_open"), "no probe after the cool-down"
    assert failed_while_down < 40, f"{failed_while_down} of {n} jobs hit the dead downstream"
    assert not stack.runs()
    down.unlink()
    stack.wait_for(lambda: run_ids(stack) >= set(ids), 60, "every job after recovery")
    assert _events(stack, "circuit_closed")
    assert stack.read_topic(stack.topics.dlq) == []
    assert stack.stop_all() == [0]


def test_dlq_guard_stops_the_worker_before_it_dead_letters_everything(stack_factory) -> None:
    stack: Stack = stack_factory(
        worker={"dlq_guard": {"max_ratio": 0.5, "window_s": 30, "min_jobs": 10},
                "max_in_flight": 2},
    )
    n = 300
    stack.publish_many([({"seq": i, "behaviour": "permanent"}, f"k{i}") for i in range(n)])
    proc = stack.start_worker()
    assert proc.wait(60) == 4
    [tripped] = _events(stack, "dlq_guard_tripped")
    assert "dead-letter" in tripped["reason"]
    dlq = stack.read_topic(stack.topics.dlq)
    ids = [hdrs(m)[wire.JOB_ID] for m in dlq]
    # the 10th dead letter reaches min_jobs with a ratio over the limit: it is not written
    assert len(ids) == 9, len(ids)
    assert len(set(ids)) == len(ids)
    # what was dead-lettered was committed: a restarted worker does not dead-letter it again
    committed = sum(max(0, o) for o in stack.committed(stack.topics.main).values())
    assert committed == len(ids)
