"""Committing what finished. Two modes, one seam:

- transactional (default): each commit interval is one Kafka transaction holding the ledger,
  retry and DLQ records and the consumed offsets (send_offsets_to_transaction with the group
  metadata, which fences a zombie whose generation is stale).
- at_least_once: commit the offsets of jobs whose records the broker acknowledged. A
  periodic commit is asynchronous and does not flush: an offset finishes only on its record's
  acknowledgement, so it never covers an unwritten record, and the poll loop does not stall
  (a flush + synchronous commit held it 15-95 ms, the largest share of the latency p99). A
  revoke or shutdown flushes and commits synchronously: the next owner starts from there.

Offsets are committed explicitly (enable.auto.commit=false) rather than through
store_offsets + auto commit: the commit point must move exactly when our records are durable,
which only an explicit commit can tie to a flush or a transaction.
"""

from __future__ import annotations

import contextlib
import threading

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from jobstream.config.settings import Mode
from jobstream.consumers.errors import WorkerError, WorkerFenced


class CommitAborted(WorkerError):
    """This interval's work was not committed (e.g. the commit raced a rebalance and the group
    generation moved on). Nothing of it is visible; the worker rewinds to the last commit."""


class ProducerFenced(WorkerFenced):
    """The transactional producer can no longer be used (fenced, or in a fatal state). With a
    transactional id of its own per process, this is the broker having timed out our open
    transaction (a long outage), unless the process was frozen: the worker then renews its
    producer and redoes the interval. A frozen one is a zombie and stops."""


def kafka_exception(e: BaseException) -> KafkaException:
    """The KafkaException behind a producer call's failure; anything else is raised again. An
    exception raised by one callback (a fatal error, or WorkerFenced from a delivery report)
    can be pending while confluent-kafka runs the next callback of the same poll; that
    callback's first C call then fails with a SystemError chained to it (seen once in CI:
    `time.monotonic` "returned a result with an exception set", worker exit 70). The pending
    exception is what happened, so it is the one returned or raised."""
    if isinstance(e, KafkaException):
        return e
    cause = e.__cause__ if isinstance(e, SystemError) else None
    if isinstance(cause, KafkaException):
        return cause
    raise cause or e


Offsets = dict[tuple[str, int], int]
STUCK_GRACE_S = 5.0
# Timed-out aborts in a row before the producer is given up. One timeout is an outage and the
# next call resumes the abort; after a broker restart librdkafka could also stay in its abort
# for good (seen in CI: every interval then failed on it, 10 s each, for minutes).
STUCK_ABORTS = 2


class Committer:
    def __init__(
        self, mode: Mode, consumer: Consumer, producer: Producer, timeout_s: float = 10.0
    ) -> None:
        self.mode = mode
        self.consumer = consumer
        self.producer = producer
        self.timeout_s = timeout_s
        self.in_txn = False
        # Set once any call saw the producer fenced or in a fatal state. The abort that follows
        # a failed call swallows its own ProducerFenced, so the interval's redo asks this to
        # know it must renew the producer (a fenced one fails every later call).
        self.fenced = False
        self._timed_out_aborts = 0
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

    def commit(self, offsets: Offsets, wait: bool = True) -> None:
        """Make produced records and `offsets` durable together. Raises WorkerFenced when this
        worker must stop (its producer is fenced or in a fatal state), CommitAborted when the
        interval failed but the worker can redo it from the last commit. wait=False (at least
        once only): send the commit without waiting; a failure reaches the consumer's
        on_commit callback, and a later commit covers the same offsets."""
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        if self.mode is Mode.AT_LEAST_ONCE and not wait:
            if tps:
                try:
                    self.consumer.commit(offsets=tps, asynchronous=True)
                except KafkaException as e:
                    raise CommitAborted(f"offset commit failed: {e.args[0]}") from None
            return
        if self.mode is Mode.AT_LEAST_ONCE:
            remaining = self.producer.flush(self.timeout_s)
            if remaining:  # redone from the last commit; a late delivery is a duplicate only
                raise CommitAborted(f"{remaining} records not acknowledged in {self.timeout_s}s")
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
                self._send_offsets_bounded, tps, self.consumer.consumer_group_metadata()
            )
        self._call(self.producer.commit_transaction, self.timeout_s)
        self.in_txn = False

    def _send_offsets_bounded(self, tps: list[TopicPartition], group: object) -> None:
        """send_offsets_to_transaction can block past its timeout when the group coordinator
        went away (librdkafka #5456, #5511): wait for it on the side, and past the timeout
        give the producer up (the worker renews it, which aborts the transaction)."""
        outcome: list[BaseException | None] = []

        def call() -> None:
            try:
                self.producer.send_offsets_to_transaction(tps, group, self.timeout_s)
                outcome.append(None)
            except BaseException as e:
                outcome.append(e)

        t = threading.Thread(target=call, name="js-send-offsets", daemon=True)
        t.start()
        t.join(self.timeout_s + STUCK_GRACE_S)
        if not outcome:
            self.in_txn = False
            self.fenced = True
            raise ProducerFenced(
                f"send_offsets_to_transaction stuck for over {self.timeout_s + STUCK_GRACE_S:g}s "
                "(the group coordinator moved); giving this producer up"
            )
        if outcome[0] is not None:
            raise outcome[0]

    def abort(self) -> None:
        """Abort the open transaction. Raises ProducerFenced when the producer is unusable
        (nothing of the transaction becomes visible then either)."""
        if self.mode is Mode.TRANSACTIONAL and self.in_txn:
            self.in_txn = False
            try:
                self.producer.abort_transaction(self.timeout_s)
            except KafkaException as e:
                if self.saw(e.args[0]):
                    raise ProducerFenced(f"cannot abort: {e.args[0]}") from None
                self._timed_out_aborts += 1
                if self._timed_out_aborts >= STUCK_ABORTS:
                    # A new producer under our transactional id finishes the abort for us:
                    # its init_transactions has the coordinator abort what is still open.
                    self.fenced = True
                    raise ProducerFenced(
                        f"abort_transaction timed out {self._timed_out_aborts} times in a row "
                        f"({e.args[0]}); giving this producer up"
                    ) from None
                # Timed out (broker unreachable): the next begin fails until the abort went
                # through, and the interval is given up again then.
                self.in_txn = True
                return
            self._timed_out_aborts = 0

    def saw(self, err: object) -> bool:
        """Note an error the producer reported anywhere; True when it fences the producer."""
        if _is_fencing(err):
            self.fenced = True
        return self.fenced

    def _call(self, fn: object, *args: object) -> None:
        try:
            fn(*args)  # type: ignore[operator]
        except (KafkaException, SystemError) as raised:
            err = kafka_exception(raised).args[0]
            if self.saw(err):
                self.in_txn = False
                raise ProducerFenced(f"fenced: {err}") from None
            with contextlib.suppress(ProducerFenced):
                self.abort()
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
