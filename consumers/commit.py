"""Committing what finished. Two modes, one seam:

- transactional (default): each commit interval is one Kafka transaction holding the ledger,
  retry and DLQ records and the consumed offsets (send_offsets_to_transaction with the group
  metadata, which fences a zombie whose generation is stale).
- at_least_once: flush the producer, then commit offsets synchronously.

Offsets are committed explicitly (enable.auto.commit=false) rather than through
store_offsets + auto commit: the commit point must move exactly when our records are durable,
which only an explicit commit can tie to a flush or a transaction.
"""

from __future__ import annotations

import contextlib

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from config.settings import Mode
from consumers.errors import WorkerError, WorkerFenced


class CommitAborted(WorkerError):
    """This interval's work was not committed (e.g. the commit raced a rebalance and the group
    generation moved on). Nothing of it is visible; the worker rewinds to the last commit."""


Offsets = dict[tuple[str, int], int]


class Committer:
    def __init__(
        self, mode: Mode, consumer: Consumer, producer: Producer, timeout_s: float = 30.0
    ) -> None:
        self.mode = mode
        self.consumer = consumer
        self.producer = producer
        self.timeout_s = timeout_s
        self.in_txn = False
        if mode is Mode.TRANSACTIONAL:
            try:
                producer.init_transactions(timeout_s)
            except KafkaException as e:
                raise WorkerFenced(f"cannot initialise transactions: {e.args[0]}") from None

    def before_produce(self) -> None:
        """Called before every produce: in transactional mode a transaction must be open."""
        if self.mode is Mode.TRANSACTIONAL and not self.in_txn:
            self._call(self.producer.begin_transaction)
            self.in_txn = True

    def commit(self, offsets: Offsets) -> None:
        """Make produced records and `offsets` durable together. Raises WorkerFenced when this
        worker must stop (its producer is fenced or in a fatal state), CommitAborted when the
        interval failed but the worker can redo it from the last commit."""
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        if self.mode is Mode.AT_LEAST_ONCE:
            remaining = self.producer.flush(self.timeout_s)
            if remaining:
                raise WorkerFenced(f"{remaining} records not acknowledged within {self.timeout_s}s")
            if tps:
                try:
                    self.consumer.commit(offsets=tps, asynchronous=False)
                except KafkaException as e:
                    err = e.args[0]
                    if isinstance(err, KafkaError) and err.code() == KafkaError._NO_OFFSET:
                        return
                    if isinstance(err, KafkaError) and err.fatal():
                        raise WorkerFenced(f"offset commit failed: {err}") from None
                    raise CommitAborted(f"offset commit failed: {err}") from None
            return
        if not tps and not self.in_txn:
            return
        self.before_produce()
        if tps:
            self._call(
                self.producer.send_offsets_to_transaction,
                tps,
                self.consumer.consumer_group_metadata(),
                self.timeout_s,
            )
        self._call(self.producer.commit_transaction, self.timeout_s)
        self.in_txn = False

    def abort(self) -> None:
        if self.mode is Mode.TRANSACTIONAL and self.in_txn:
            # In a fatal state abort fails too; nothing of the transaction becomes visible anyway.
            with contextlib.suppress(KafkaException):
                self.producer.abort_transaction(self.timeout_s)
            self.in_txn = False

    def _call(self, fn: object, *args: object) -> None:
        try:
            fn(*args)  # type: ignore[operator]
        except KafkaException as e:
            err = e.args[0]
            self.abort()
            if _is_fencing(err):
                raise WorkerFenced(f"fenced: {err}") from None
            raise CommitAborted(f"transaction aborted: {err}") from None


def _is_fencing(err: object) -> bool:
    if not isinstance(err, KafkaError):
        return False
    return err.fatal() or err.code() in (
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.FENCED_INSTANCE_ID,
    )
