"""Ledger (6): restore rate of consumers.ledger.restore_partitions against a raw read of the same
ledger topic, and the memory a LedgerView holds per entry at 1,000,000 entries."""

from __future__ import annotations

import gc
import os
import time
import uuid

from confluent_kafka import Producer

from benchmarks import raw
from benchmarks.common import PARTITIONS, Bench, Row, limit_row, ratio_row, say
from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings
from jobstream.consumers.runtime.ledger import restore_partitions
from jobstream.consumers.runtime.ledger_view import LedgerView
from jobstream.schemas.ledger_entry import SUCCEEDED, encode_entry

MEMORY_ENTRIES = 1_000_000


def _fill_ledger(settings: Settings, topic: str, n: int) -> None:
    """n completions with job-id-like keys, as workers write them (one per partition turn)."""
    producer = Producer(client_config(settings.kafka, **{"linger.ms": 50, "batch.size": 1_000_000}))
    now = int(time.time() * 1000)
    worker = f"bench-{os.getpid()}-0000"
    for i in range(n):
        value = encode_entry(SUCCEEDED, now - i, 1, worker)
        while True:
            try:
                producer.produce(topic, value, uuid.uuid4().hex.encode(), partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(120)


def ledger(b: Bench) -> list[Row]:
    n = b.size(1_000_000, 50_000)
    st = b.stack("ledger", "bench.noop")
    topic = st.topics.ledger
    say(f"ledger: writing {n:,} ledger records to {topic}")
    _fill_ledger(st.settings, topic, n)
    tps = [(topic, p) for p in range(PARTITIONS)]
    ttl_ms = int(st.settings.worker.ledger_ttl_s * 1000)

    # A single pair scattered 0.6-1.0 (the first read of the topic ran slower or faster by turns),
    # so each side is timed twice, in the order raw, restore, restore, raw, and its best kept.
    raw_times: list[float] = []
    restore_times: list[float] = []
    for first_raw in (True, False):
        for is_raw in (first_raw, not first_raw):
            t0 = time.perf_counter()
            if is_raw:
                count = raw.read_to_end(st.settings, topic, PARTITIONS)
                raw_times.append(time.perf_counter() - t0)
                say(f"ledger: raw read {count:,} records in {raw_times[-1]:.2f} s")
            else:
                views = restore_partitions(st.settings, tps, ttl_ms)
                restore_times.append(time.perf_counter() - t0)
                entries = sum(len(v) for v in views.values())
                restored_bytes = sum(v.nbytes() for v in views.values())
                say(f"ledger: restored {entries:,} entries in {restore_times[-1]:.2f} s")
                del views
                gc.collect()
    raw_s, restore_s = min(raw_times), min(restore_times)
    t0 = time.perf_counter()
    raw.read_to_end(st.settings, topic, PARTITIONS, digest=True)
    digest_s = time.perf_counter() - t0
    say(f"ledger: raw read + a digest of each key in {digest_s:.2f} s")

    # Memory: one view filled to MEMORY_ENTRIES ids (the target's size): three flat arrays.
    size = MEMORY_ENTRIES if not b.quick else MEMORY_ENTRIES // 5
    view = LedgerView()
    now = int(time.time() * 1000)
    t0 = time.perf_counter()
    view.add_many((uuid.uuid4().hex, now) for _ in range(size))
    add_s = time.perf_counter() - t0
    per_entry = view.nbytes() / len(view)
    say(f"ledger: {per_entry:.1f} bytes/entry at {len(view):,} entries")
    return [
        ratio_row(
            "6 ledger",
            "restore (restore_partitions)",
            entries / restore_s,
            count / raw_s,
            "entries/s",
            "raw read of the same topic",
            0.8,
            f"{entries:,} entries in {PARTITIONS} partitions; raw = assign, consume to the high "
            "watermark, touch key and value; best of 2 each (raw s "
            + "/".join(f"{t:.2f}" for t in raw_times)
            + ", restore s "
            + "/".join(f"{t:.2f}" for t in restore_times)
            + ")",
        ),
        ratio_row(
            "6 ledger",
            "floor: raw read + a 16-byte blake2b digest of each key",
            count / digest_s,
            count / raw_s,
            "entries/s",
            "raw read of the same topic",
            None,
            "the least a view of at most 64 bytes per entry adds: it keeps digests, not ids",
        ),
        limit_row(
            "6 ledger",
            f"memory per entry held by one view at {len(view):,} entries",
            per_entry,
            "bytes",
            64,
            f"LedgerView.nbytes() (its arrays are all it keeps per entry); restored views "
            f"above: {restored_bytes / max(entries, 1):.1f} bytes/entry; add_many "
            f"{len(view) / add_s:,.0f} ids/s",
        ),
    ]
