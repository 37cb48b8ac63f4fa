"""Dedup ledger and transactional commits against the real broker."""

from __future__ import annotations

import json
import os
import random
import signal
import time

from confluent_kafka import Producer

from jobstream.config.settings import load_settings
from jobstream.consumers.runtime.ledger import restore_partitions
from jobstream.consumers.runtime.ledger_view import LedgerView
from jobstream.schemas.ledger_entry import decode_entry
from tests.support.harness import Stack


def test_same_job_id_published_five_times_runs_once(stack_factory) -> None:
    stack: Stack = stack_factory()
    stack.publish_many(
        [({"seq": i, "behaviour": "ok"}, "same-key") for i in range(5)], job_id="order-42"
    )
    stack.publish_many([({"seq": 9, "behaviour": "ok"}, "other")])  # a marker after them
    stack.start_worker()
    stack.wait_for(lambda: any(r["key"] == "other" for r in stack.runs()), 60, "marker job")
    time.sleep(1)
    runs = [r for r in stack.runs() if r["job_id"] == "order-42"]
    assert len(runs) == 1, runs
    log = (stack.tmp / "worker-0.log").read_text()
    assert log.count('"event": "deduplicated"') == 4


def test_ledger_records_are_written_to_the_source_partition(stack_factory) -> None:
    stack: Stack = stack_factory()
    ids = stack.publish_many([({"seq": 0, "behaviour": "ok"}, f"k{i}") for i in range(30)])
    stack.start_worker()
    stack.wait_runs(30)
    assert stack.stop_all() == [0]
    ledger = stack.ledger_records()
    main = stack.read_topic(stack.topics.main)
    assert {m.key().decode() for m in ledger} == set(ids)
    by_id = {dict(m.headers())["js-job-id"].decode(): m.partition() for m in main}
    for m in ledger:
        assert m.partition() == by_id[m.key().decode()]
        entry = decode_entry(m.value())
        assert entry is not None and entry["status"] == "succeeded"


def test_restart_does_not_rerun_recorded_jobs(stack_factory) -> None:
    """A job whose completion is recorded never runs again: the same job ids published again
    after a restart are all deduplicated (at-least-once mode, where an entry counts once the
    broker acknowledged it)."""
    stack: Stack = stack_factory(worker={"mode": "at_least_once"})
    ids = stack.publish_many([({"seq": 0, "behaviour": "ok"}, f"k{i}") for i in range(50)])
    stack.start_worker()
    stack.wait_runs(50)
    assert stack.stop_all() == [0]
    # Publish the very same job ids again (a producer retry storm): all deduplicated.
    stack.publish_many([({"seq": 1, "behaviour": "ok"}, f"k{i}") for i in range(50)], job_id=None)
    with stack.publisher() as pub:
        for i, jid in enumerate(ids):
            pub.publish_async(
                stack.job_type, {"seq": 2, "behaviour": "ok"}, key=f"k{i}", job_id=jid
            )
    stack.procs.clear()
    stack.start_worker(log_name="second.log")
    stack.wait_runs(100)
    time.sleep(1.5)
    runs = stack.runs()
    assert sorted(r["job_id"] for r in runs if r["job_id"] in set(ids)) == sorted(ids)
    assert (stack.tmp / "second.log").read_text().count('"event": "deduplicated"') == 50


def test_sigkill_repeatedly_no_run_after_recorded_completion(stack_factory) -> None:
    stack: Stack = stack_factory(worker={"max_in_flight": 128})
    n = 20_000
    ids = stack.publish_many(
        [({"seq": i // 100, "behaviour": "ok"}, f"k{i % 100}") for i in range(n)]
    )
    for _ in range(3):
        stack.start_worker()
    rng = random.Random(7)
    kills = 0
    deadline = time.monotonic() + 240
    while kills < 5 and time.monotonic() < deadline:
        # Kill mid-stream: only once jobs are flowing again since the last kill.
        seen = len(stack.runs())
        target = min(n, seen + 1500)
        stack.wait_for(lambda t=target: len(stack.runs()) >= t, 120, "progress")
        if len(stack.runs()) >= n:
            break
        alive = [p for p in stack.procs if p.poll() is None]
        victim = rng.choice(alive)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        kills += 1
        stack.start_worker()
    runs = stack.wait_runs(n, timeout=300)
    assert kills >= 5, f"only {kills} kills happened before the run ended"
    assert {r["job_id"] for r in runs} == set(ids)
    # Completion recorded = ledger record committed. A run that started after the job's
    # ledger record was committed would be a dedup failure.
    # The last interval's transaction commits shortly after the last run; a killed worker's
    # dangling transaction can hide it from read_committed readers until it times out.
    stack.wait_for(
        lambda: len({m.key() for m in stack.ledger_records(30)}) >= n,
        90,
        "every completion recorded in the ledger",
    )
    recorded_at = {}
    for m in stack.ledger_records(timeout=30):
        entry = decode_entry(m.value())
        jid = m.key().decode()
        recorded_at[jid] = min(recorded_at.get(jid, entry["finished_at"]), entry["finished_at"])
    after = [r for r in runs if r["start"] * 1000 > recorded_at[r["job_id"]] + 1000]
    print(
        f"\nSIGKILL x{kills}: {n} jobs, {len(runs)} handler runs, "
        f"{len(runs) - n} repeated, {len(after)} after a recorded completion"
    )
    assert after == []


def test_restore_reads_committed_ledger(stack_factory) -> None:
    stack: Stack = stack_factory()
    ids = stack.publish_many([({"seq": 0, "behaviour": "ok"}, f"k{i}") for i in range(20)])
    stack.start_worker()
    stack.wait_runs(20)
    assert stack.stop_all() == [0]
    t0 = time.monotonic()
    views = restore_partitions(
        load_settings(kafka={"bootstrap_servers": stack.settings.kafka.bootstrap_servers}),
        [(stack.topics.ledger, p) for p in range(6)],
        ttl_ms=3_600_000,
    )
    took = time.monotonic() - t0
    # A restore is on every assignment's path to ready. Starting from OFFSET_BEGINNING and
    # waiting out the last batch call's timeout cost 0.5 s each, 1.0-1.2 s for these 20.
    assert took < 0.8, f"restoring 20 entries took {took:.2f}s"
    assert sum(len(v) for v in views.values()) == 20
    assert all(any(j in v for v in views.values()) for j in ids)
    assert os.environ.get("JOBSTREAM_CONFIG") is None


def test_restore_catches_up_a_seed_view_from_where_it_was_read_to(stack_factory) -> None:
    """A view kept from an earlier ownership (an eager rebalance hands the partition straight
    back) is caught up with what was written since, not read again from the beginning."""
    stack: Stack = stack_factory()
    settings = load_settings(kafka={"bootstrap_servers": stack.settings.kafka.bootstrap_servers})
    tps = [(stack.topics.ledger, p) for p in range(6)]
    first = stack.publish_many([({"seq": 0, "behaviour": "ok"}, f"a{i}") for i in range(20)])
    stack.start_worker()
    stack.wait_runs(20)
    assert stack.stop_all() == [0]
    views = restore_partitions(settings, tps, ttl_ms=3_600_000)
    later = stack.publish_many([({"seq": 0, "behaviour": "ok"}, f"b{i}") for i in range(10)])
    stack.start_worker()
    stack.wait_runs(30)
    assert stack.stop_all() == [0, 0]  # both workers' exit codes

    # Empty seeds marked as read to the same offsets: only what came after is read.
    empty = {}
    for tp, view in views.items():
        empty[tp] = LedgerView()
        empty[tp].read_to = view.read_to
    caught_up = restore_partitions(settings, tps, ttl_ms=3_600_000, seeds=empty)
    found = {j for j in first + later if any(j in v for v in caught_up.values())}
    assert found == set(later)

    full = restore_partitions(settings, tps, ttl_ms=3_600_000, seeds=views)
    assert all(any(j in v for v in full.values()) for j in first + later)
    assert sum(len(v) for v in full.values()) == 30


def test_a_fenced_producer_is_renewed_and_the_interval_redone(stack_factory) -> None:
    """Another producer takes the worker's transactional id mid-interval (as a broker that timed
    out our transaction would): librdkafka raises the fatal error from whichever call sees it
    first (produce, poll, flush or commit). The worker renews its producer, redoes the interval
    and finishes every job; it neither crashes nor stops."""
    stack: Stack = stack_factory(worker={"mode": "transactional"})
    ids = stack.publish_many(
        [({"seq": 0, "behaviour": "sleep_ms:300"}, f"a{i}") for i in range(40)]
    )
    proc = stack.start_worker()
    stack.wait_runs(5)
    first = json.loads((stack.tmp / "worker-0.log").read_text().splitlines()[0])
    txn_id = f"jobstream-{stack.settings.worker.group_id}-{first['worker']}"
    thief = Producer(
        {"bootstrap.servers": stack.settings.kafka.bootstrap_servers, "transactional.id": txn_id}
    )
    thief.init_transactions(30)  # bumps the epoch: the worker's producer is fenced
    ids += stack.publish_many([({"seq": 1, "behaviour": "ok"}, f"b{i}") for i in range(20)])
    # Runs of the fenced interval were thrown away with it: done is what the ledger records.
    stack.wait_for(
        lambda: set(ids) <= {m.key().decode() for m in stack.ledger_records()},
        90,
        "every job's completion in the ledger",
    )
    assert proc.poll() is None, "the worker stopped"
    assert stack.stop_all() == [0]
    assert '"event": "producer_renewed"' in (stack.tmp / "worker-0.log").read_text()
