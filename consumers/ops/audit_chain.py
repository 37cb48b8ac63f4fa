"""The audit topic as a hash chain (schemas/chain.py): appending a linked record, verifying.

Operators on many machines append to the one partition of `jobstream.audit`, so a record can
only link to the true last record if appends are serialised. They are, by one shared
transactional id: a writer's `init_transactions` fences any other writer, then it reads the tail
(read_committed, so it sees every committed record and nothing of a fenced one), links to it and
commits. A writer fenced meanwhile starts over, so concurrent appends form one line, not a fork.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings
from jobstream.config.topics import AUDIT_TOPIC
from jobstream.consumers.ops.dlq import DlqError
from jobstream.consumers.ops.dlq_reader import QUIET, Reader, list_topics
from jobstream.schemas.chain import GENESIS, Problem, Verifier, head_of, seal


def writer_id(topic: str) -> str:
    """One transactional id for every writer of a topic: that is what serialises them."""
    return f"jobstream.chain-writer.{topic}"

# Writers fence each other in turn: three appending at once on a loaded machine used up six.
ATTEMPTS = 12
TIMEOUT_S = 30.0
VISIBLE_WAIT_S = 5.0


def _decode(value: bytes | None) -> Any:
    try:
        return json.loads(value or b"")
    except ValueError:
        return None


def tail_hash(settings: Settings, topic: str = AUDIT_TOPIC) -> str:
    """The hash of the last committed record of the audit partition (GENESIS when there is none
    or it predates chaining). Reads a small window from the end, widening it past transaction
    markers and aborted records."""
    r = Reader(settings, topic, group="jobstream-audit-writer")
    try:
        lo, hi = r.bounds()[0]
        window = 8
        while hi > lo:
            start = max(lo, hi - window)
            last = None
            for rec in r.read({0: start}, {0: hi}):
                last = rec
            if last is not None:
                return head_of(_decode(last.value)) or GENESIS
            if start == lo:
                break
            window *= 4
            r.close()
            r = Reader(settings, topic, group="jobstream-audit-writer")
        return GENESIS
    finally:
        r.close()


def _offsets_into(into: list[int]) -> Callable[[KafkaError | None, Message], None]:
    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            into.append(msg.offset() or 0)
    return delivered


def _until_visible(settings: Settings, topic: str, offset: int) -> None:
    """A commit returns before its markers are written, and read_committed readers (audit
    verify, the console's audit page) stop at the last stable offset until they are: wait,
    briefly, so that an append is visible to whoever reads right after it. Committed either
    way, so running out of time is not an error."""
    r = Reader(settings, topic, group="jobstream-audit-writer")
    try:
        deadline = time.monotonic() + VISIBLE_WAIT_S
        while time.monotonic() < deadline:
            try:
                _, stable = r.consumer.get_watermark_offsets(
                    TopicPartition(topic, 0), timeout=2.0, cached=False)
            except KafkaException:
                return
            if stable > offset:
                return
            time.sleep(0.01)
    finally:
        r.close()


def append(settings: Settings, key: bytes, content: dict[str, Any],
           topic: str = AUDIT_TOPIC) -> dict[str, Any]:
    """Link `content` after the last record of the topic's (one) partition and write it; the
    sealed record. DlqError when it could not be written (the broker is gone, or other writers
    kept fencing this one)."""
    last_error = "no attempt"
    for attempt in range(ATTEMPTS):
        producer = Producer(client_config(settings.kafka, logger=QUIET, **{
            "transactional.id": writer_id(topic),
            "enable.idempotence": True,
            "transaction.timeout.ms": int(TIMEOUT_S * 1000),
        }))
        try:
            producer.init_transactions(TIMEOUT_S)
            record = seal(content, tail_hash(settings, topic))
            producer.begin_transaction()
            written: list[int] = []
            producer.produce(topic, key=key, value=json.dumps(record).encode(), partition=0,
                             on_delivery=_offsets_into(written))
            producer.commit_transaction(TIMEOUT_S)
            if written:
                _until_visible(settings, topic, written[0])
            return record
        except KafkaException as e:
            err = e.args[0] if e.args else None
            last_error = err.str() if isinstance(err, KafkaError) else str(e)
            if isinstance(err, KafkaError) and not (
                err.retriable() or err.txn_requires_abort() or err.fatal()
                or err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                  KafkaError._TIMED_OUT, KafkaError.CONCURRENT_TRANSACTIONS)
            ):
                break
            time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))  # another writer holds it
        finally:
            producer.flush(0)
    raise DlqError(f"audit record not written to {topic}: {last_error}")


@dataclass
class Report:
    topic: str
    low: int
    high: int
    verifier: Verifier

    @property
    def ok(self) -> bool:
        return self.verifier.ok

    @property
    def problems(self) -> list[Problem]:
        return self.verifier.problems

    def as_dict(self) -> dict[str, Any]:
        v = self.verifier
        return {
            "topic": self.topic, "ok": v.ok, "records": v.records, "events": v.events,
            "unchained": v.unchained,
            "first_chained_offset": v.first_chained, "head_offset": v.head_offset,
            "head": v.head, "oldest_offset": self.low, "starts_mid_chain": v.starts_mid_chain,
            "problems": [{"offset": p.offset, "reason": p.reason} for p in v.problems],
        }


def parse_anchor(text: str) -> tuple[int, str]:
    """`OFFSET:HASH`, as `audit verify` prints the head."""
    offset, sep, digest = text.partition(":")
    digest = digest.strip().lower()
    if not sep or not offset.strip().isdigit() or len(digest) != 64 or any(
        c not in "0123456789abcdef" for c in digest
    ):
        raise DlqError(f"--anchor {text!r}: expected OFFSET:HASH (a 64-digit hex SHA-256), "
                       "as `jobstream audit verify` prints the head")
    return int(offset), digest


def verify(settings: Settings, anchors: dict[int, str] | None = None,
           topic: str = AUDIT_TOPIC, partition: int = 0) -> Report:
    """Walk one partition of a chained topic (the audit trail by default), checking every link."""
    if topic not in list_topics(settings):
        return Report(topic, 0, 0, Verifier())
    reports = verify_partitions(settings, topic, {partition: dict(anchors or {})}, [partition])
    return reports[partition]


def verify_partitions(settings: Settings, topic: str,
                      anchors: dict[int, dict[int, str]] | None = None,
                      partitions: list[int] | None = None,
                      since_ms: int | None = None) -> dict[int, Report]:
    """Walk each partition of a chained topic (all of them by default), from its oldest
    record, or from the first at or after `since_ms` (then its first link is taken as given)."""
    anchors = anchors or {}
    r = Reader(settings, topic, group="jobstream-audit-verify")
    try:
        bounds = r.bounds()
        wanted = sorted(bounds) if partitions is None else partitions
        for p in wanted:
            if p not in bounds:
                raise DlqError(f"{topic} has no partition {p}")
        starts = {p: bounds[p][0] for p in wanted}
        if since_ms is not None:
            starts = {p: max(lo, _offset_at(r, topic, p, since_ms, bounds[p][1]))
                      for p, lo in starts.items()}
        verifiers = {p: Verifier(starts_mid_chain=starts[p] > 0, anchors=dict(anchors.get(p, {})))
                     for p in wanted}
        for rec in r.read(starts, {p: bounds[p][1] for p in wanted}):
            verifiers[rec.partition].feed(rec.offset, _decode(rec.value))
        for v in verifiers.values():
            v.finish()
    finally:
        r.close()
    return {p: Report(topic, starts[p], bounds[p][1], verifiers[p]) for p in wanted}


def _offset_at(r: Reader, topic: str, partition: int, ms: int, high: int) -> int:
    try:
        found = r.consumer.offsets_for_times([TopicPartition(topic, partition, ms)], timeout=10)
    except KafkaException:
        raise DlqError(f"cannot look up offsets by time in {topic}") from None
    offset = found[0].offset
    return high if offset < 0 else int(offset)  # nothing that new: nothing to walk
