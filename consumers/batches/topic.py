"""jobstream.batches: created when missing (`jobstream topics apply` creates it too), and read
back whole (the CLI's batch view, `cancel --batch`)."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings
from jobstream.config.topics import BATCHES_PARTITIONS, BATCHES_SPEC, BATCHES_TOPIC
from jobstream.consumers.batches.book import Book, Entry
from jobstream.schemas import batch_record as br


def ensure_topic(settings: Settings) -> None:
    from jobstream.consumers.ops.topic_plan import ensure

    ensure(settings, BATCHES_SPEC)


def read_batch(settings: Settings, batch_id: str) -> Entry | None:
    """The batch as its owner would restore it (its partition read to the end); None when the
    topic has no record of it."""
    from jobstream.consumers.ops.dlq_reader import Reader

    admin = AdminClient(client_config(settings.kafka))
    if BATCHES_TOPIC not in admin.list_topics(timeout=15).topics:
        return None
    p = br.partition_of(batch_id, BATCHES_PARTITIONS)
    r = Reader(settings, BATCHES_TOPIC, group="jobstream-batches-reader")
    book = Book()
    prefix = batch_id.encode()
    try:
        bounds = r.bounds()
        lo, hi = bounds.get(p, (0, 0))
        for rec in r.read({p: lo}, {p: hi}):
            k = rec.key or b""
            if k == prefix or k.startswith(prefix + br.SEP.encode()):
                book.apply(k, rec.value)
    finally:
        r.consumer.close()
    e = book.entries.get(batch_id)
    return e if e is not None and (e.batch is not None or e.outcomes) else None
