"""Publisher throughput (3): Publisher.publish_async (validation, Avro encoding, headers, the
size check) against a raw confluent-kafka producer sending the very same bytes, same config.
Both are timed from the first send to flush() returning (every record acknowledged)."""

from __future__ import annotations

import time

from confluent_kafka import Producer

from benchmarks import raw
from benchmarks.common import Bench, Row, bench_payload, ratio_row, say
from jobstream.config.durations import now_ms
from jobstream.config.kafka import client_config
from jobstream.producers.publisher import new_job_id
from jobstream.schemas import wire


def publisher(b: Bench) -> list[Row]:
    n = b.size(200_000, 10_000)
    st = b.stack("publisher", "bench.noop")
    payloads = [bench_payload(i) for i in range(n)]
    pub = st.publisher()
    pub.publish("bench.noop", payloads[0])  # warm: metadata, the topic's size limit
    # The raw producer sends what the publisher would have sent: same topic, key, value and
    # headers (built outside the timing).
    records: list[tuple[str, bytes, bytes, list[tuple[str, str | bytes | None]]]] = []
    for p in payloads:
        topic, job_id, value, built = pub.build("bench.noop", p)
        records.append((topic, job_id.encode(), value, list(built)))
    producer = Producer(client_config(st.settings.kafka, **raw.PUBLISHER_PRODUCER))
    producer.produce(records[0][0], records[0][2], records[0][1], headers=records[0][3])
    producer.flush(30)

    say(f"publisher: raw producer, {n:,} records")
    t0 = time.perf_counter()
    for topic, key, value, headers in records:
        while True:
            try:
                producer.produce(topic, value, key, headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(120)
    raw_rate = n / (time.perf_counter() - t0)

    # The floor: the raw loop plus only what every job needs that the raw loop sends ready-made:
    # the payload validated and encoded, and its own job id and enqueue time in the headers.
    # Whatever it loses, Publisher cannot win back.
    say(f"publisher: raw producer + validate, encode and a job id per record, {n:,} records")
    encode = pub.registry.encode
    per_job_names = (wire.JOB_ID, wire.TRACEPARENT, wire.ENQUEUED_AT)
    fixed = [h for h in records[0][3] if h[0] not in per_job_names]
    t0 = time.perf_counter()
    for (topic, _key, _value, _headers), p in zip(records, payloads, strict=True):
        _version, value = encode("bench.noop", p)
        new_id = new_job_id().encode()
        per_job = [*fixed, (wire.JOB_ID, new_id), (wire.ENQUEUED_AT, str(now_ms()).encode())]
        while True:
            try:
                producer.produce(topic, value, new_id, headers=per_job)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(120)
    floor_rate = n / (time.perf_counter() - t0)
    del records

    say(f"publisher: Publisher.publish_async, {n:,} jobs")
    t0 = time.perf_counter()
    for p in payloads:
        pub.publish_async("bench.noop", p)
    pub.flush(120)
    rate = n / (time.perf_counter() - t0)
    pub.close()
    say(f"publisher: {rate:,.0f} jobs/s vs raw {raw_rate:,.0f} (floor {floor_rate:,.0f})")
    return [
        ratio_row(
            "3 publisher",
            "floor: raw producer + validate, encode and a job id per record",
            floor_rate,
            raw_rate,
            "jobs/s",
            "raw Producer.produce, same bytes",
            None,
            "per record: validate + Avro-encode, new_job_id(), enqueued-at (no traceparent: "
            "optional on the wire); the fixed headers built beforehand",
        ),
        ratio_row(
            "3 publisher",
            "Publisher.publish_async + flush",
            rate,
            raw_rate,
            "jobs/s",
            "raw Producer.produce, same bytes",
            0.8,
            f"{n:,} jobs of 100-byte payloads, 6 partitions",
        ),
    ]
