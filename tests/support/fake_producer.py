"""FakeProducer: confluent_kafka.Producer's methods on the in-memory cluster (fake_kafka.py).

Records go to the log at produce() (a real producer sends in the background, so a reader can
see them before the producer polls); delivery reports wait for poll()/flush(). Transactions
follow librdkafka's states (Init, Ready, InTransaction, AbortableError, FatalError) and the
errors it raises in each, as observed against a real broker."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from tests.support import fake_errors as fe
from tests.support.fake_log import (
    RECORD_OVERHEAD,
    Headers,
    Txn,
    as_bytes,
    as_headers,
    message,
    record_size,
)

if TYPE_CHECKING:
    from confluent_kafka.admin import ClusterMetadata

    from tests.support.fake_kafka import FakeCluster

DeliveryCallback = Callable[[KafkaError | None, Message], None]
PRODUCER_MAX_BYTES = 1_000_000  # librdkafka's message.max.bytes default


class FakeProducer:
    def __init__(self, conf: dict[str, Any], *, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.conf = dict(conf)
        self.transactional_id: str | None = conf.get("transactional.id")
        self.max_bytes = int(conf.get("message.max.bytes", PRODUCER_MAX_BYTES))
        self.message_timeout_s = int(conf.get("message.timeout.ms", 300_000)) / 1000
        self.txn_timeout_s = int(conf.get("transaction.timeout.ms", 60_000)) / 1000
        self.partitioner = str(conf.get("partitioner", "consistent_random"))
        self.on_delivery: DeliveryCallback | None = conf.get("on_delivery")
        self.error_cb: Callable[[KafkaError], None] | None = conf.get("error_cb")
        self.state = "Init" if self.transactional_id else "Ready"
        self.epoch = -1
        self.txn: Txn | None = None
        self.fatal: KafkaError | None = None
        self.abortable: KafkaError | None = None
        self._raise_fatal = False  # a fatal error is raised once from the next poll or flush
        self._reports: deque[tuple[DeliveryCallback | None, KafkaError | None, Message]] = deque()
        # produced while the brokers are down: (deadline, topic, partition, key, value,
        # headers, timestamp, callback, transaction)
        self._unsent: list[tuple[Any, ...]] = []
        self._failed_in_txn = 0
        self._round_robin = 0
        self._outage_seen = 0
        cluster.clients.append(self)

    # -- producing -----------------------------------------------------------------------------

    def produce(
        self,
        topic: str,
        value: str | bytes | None = None,
        key: str | bytes | None = None,
        partition: int = -1,
        on_delivery: DeliveryCallback | None = None,
        timestamp: int = 0,
        headers: dict[str, Any] | list[tuple[str, Any]] | None = None,
        callback: DeliveryCallback | None = None,
    ) -> None:
        c = self.cluster
        k, v, h = as_bytes(key), as_bytes(value), as_headers(headers)
        cb = on_delivery or callback or self.on_delivery
        if record_size(k, v, h) + RECORD_OVERHEAD > self.max_bytes:
            raise KafkaException(fe.produce_error(KafkaError.MSG_SIZE_TOO_LARGE))
        with c.lock:
            self._expire_txn()
            if self.fatal is not None:
                raise KafkaException(fe.produce_error(KafkaError._FATAL))
            if self.transactional_id and self.state != "InTransaction":
                raise KafkaException(fe.produce_error(KafkaError._STATE))
            t = c.topics.get(topic)
            if t is not None and partition >= len(t.partitions):
                raise KafkaException(fe.produce_error(KafkaError._UNKNOWN_PARTITION))
            if t is not None and partition < 0:
                self._round_robin += 1
                partition = c.partition_for(self.partitioner, topic, k, self._round_robin)
            ts = t.timestamp(timestamp) if t is not None else (1, timestamp)
            item = (time.monotonic() + self.message_timeout_s, topic, partition, k, v, h, ts, cb)
            if c.down:
                self._unsent.append((*item, self.txn))
            else:
                self._send(*item[1:], txn=self.txn)
            c.changed.notify_all()

    def _send(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        ts: tuple[int, int],
        cb: DeliveryCallback | None,
        txn: Txn | None,
    ) -> None:
        """The broker's side of one record (the cluster lock is held)."""
        c = self.cluster
        err: KafkaError | None = None
        t = c.topics.get(topic)
        if t is None:
            err = fe.error(KafkaError._UNKNOWN_TOPIC)
        elif self.transactional_id and self._stale():
            err = fe.error(KafkaError.INVALID_PRODUCER_EPOCH)
            self._become_fatal(
                fe.error(
                    KafkaError._FENCED,
                    f"ProduceRequest for {topic} [{partition}] with 1 message(s) failed: "
                    f"{fe.text(KafkaError.INVALID_PRODUCER_EPOCH)}: transactional producer "
                    "fenced by newer producer instance",
                    fatal=True,
                )
            )
        else:
            if txn is not None:
                txn.partitions.add((topic, partition))
            code = c.take_produce_failure(topic, partition)
            if code is None and record_size(key, value, headers) + RECORD_OVERHEAD > (
                t.max_message_bytes
            ):
                code = KafkaError.MSG_SIZE_TOO_LARGE
            if code is not None:
                err = fe.error(code)
                if code in fe.FENCING_CODES:
                    self._become_fatal(fe.error(code, fatal=True))
                elif txn is not None:
                    self._make_abortable(
                        fe.error(
                            code,
                            f"ProduceRequest for {topic} [{partition}] with 1 message(s) "
                            f"failed: {fe.text(code)}{fe.ABORTABLE_SUFFIX}",
                            txn_requires_abort=True,
                        )
                    )
        if err is not None:
            msg = message(topic, partition, None, key, value, headers, ts, err)
        else:
            assert t is not None
            rec = c.append(topic, partition, key, value, headers, ts, txn)
            msg = message(topic, partition, rec.offset, key, value, headers, rec.timestamp)
        self._reports.append((cb, err, msg))

    def _fail_unsent(self, now: float | None = None) -> None:
        """Records past message.timeout.ms fail with _MSG_TIMED_OUT (cluster lock held)."""
        keep = []
        for item in self._unsent:
            deadline, topic, partition, k, v, h, ts, cb, txn = item
            if now is None or now >= deadline:
                err = fe.error(KafkaError._MSG_TIMED_OUT)
                self._reports.append((cb, err, message(topic, partition, None, k, v, h, ts, err)))
                if txn is not None and txn is self.txn:
                    self._failed_in_txn += 1
                    self._make_abortable(
                        fe.error(
                            KafkaError._INCONSISTENT,
                            f"{self._failed_in_txn} message(s) failed delivery "
                            "(see individual delivery reports)",
                            txn_requires_abort=True,
                        )
                    )
            else:
                keep.append(item)
        self._unsent = keep

    def resend(self) -> None:
        """The brokers are back: what waited goes out (cluster lock held)."""
        self._fail_unsent(time.monotonic())
        unsent, self._unsent = self._unsent, []
        for _, topic, partition, k, v, h, ts, cb, txn in unsent:
            self._send(topic, partition, k, v, h, ts, cb, txn)

    def __len__(self) -> int:
        with self.cluster.lock:
            return len(self._reports) + len(self._unsent)

    def poll(self, timeout: float | None = None) -> int:
        c = self.cluster
        c.report_outage(self)
        with c.lock:
            self._fail_unsent(time.monotonic())
            if not self._reports and not self._raise_fatal:
                c.wait_until(c.deadline(timeout), lambda: bool(self._reports) or self._raise_fatal)
                self._fail_unsent(time.monotonic())
        return self._serve()

    def flush(self, timeout: float | None = None) -> int:
        c = self.cluster
        c.report_outage(self)
        with c.lock:
            if self._unsent:
                c.wait_until(
                    c.deadline(timeout), lambda: not self._unsent or c.expired(self._unsent)
                )
                self._fail_unsent(time.monotonic())
        self._serve()
        return len(self)

    def _serve(self) -> int:
        """Delivery reports, then a pending fatal error (raised once, as the binding does)."""
        served = 0
        while True:
            with self.cluster.lock:
                if not self._reports:
                    break
                cb, err, msg = self._reports.popleft()
            served += 1
            if cb is not None:
                cb(err, msg)  # an exception leaves the rest for the next poll
        with self.cluster.lock:
            if self._raise_fatal and self.fatal is not None:
                self._raise_fatal = False
                raise KafkaException(self.fatal)
        return served

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        with self.cluster.lock:
            for _, topic, partition, k, v, h, ts, cb, _txn in self._unsent:
                err = fe.error(KafkaError._PURGE_QUEUE)
                self._reports.append((cb, err, message(topic, partition, None, k, v, h, ts, err)))
            self._unsent = []

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        return self.cluster.metadata(topic, timeout)

    def close(self, timeout: float | None = None) -> bool:
        if self.state == "InTransaction" and self.fatal is None:
            self.abort_transaction(timeout)
        self.flush(timeout)
        return True

    # -- transactions --------------------------------------------------------------------------

    def init_transactions(self, timeout: float | None = None) -> None:
        c = self.cluster
        with c.lock:
            self._check_api()
            if self.state != "Init":
                raise KafkaException(fe.state_error(self.state))
            self._outage(timeout, "Failed to initialize Producer ID")
            c.take_txn_failure(self, "init_transactions")
            assert self.transactional_id is not None
            self.epoch = c.txns.claim(self.transactional_id)
            self.state = "Ready"

    def begin_transaction(self) -> None:
        with self.cluster.lock:
            self._check_api()
            self._expire_txn()
            if self.fatal is not None:
                raise KafkaException(self.fatal)
            if self.state != "Ready":
                raise KafkaException(fe.state_error(self.state))
            self.cluster.take_txn_failure(self, "begin_transaction")
            assert self.transactional_id is not None
            self.txn = Txn(self.transactional_id, self.epoch, self.txn_timeout_s)
            self.cluster.txns.begun(self.txn)
            self._failed_in_txn = 0
            self.state = "InTransaction"

    def send_offsets_to_transaction(
        self, positions: list[TopicPartition], group_metadata: Any, timeout: float | None = None
    ) -> None:
        c = self.cluster
        with c.lock:
            self._check_in_txn()
            self._outage(
                timeout, "Failed to add offsets to transaction on broker TxnCoordinator",
                retriable=True,
            )
            self._check_fenced("Failed to add offsets to transaction")
            c.take_txn_failure(self, "send_offsets_to_transaction")
            offsets = {(p.topic, p.partition): p.offset for p in positions if p.offset >= 0}
            if not offsets:
                return
            code = c.txns.offsets_check(group_metadata)
            if code is not None:
                where = ", ".join(f"{t}[{p}]" for t, p in sorted(offsets))
                self._make_abortable(
                    fe.error(
                        code,
                        f"Failed to commit offsets to transaction: {where} ({fe.text(code)})",
                        txn_requires_abort=True,
                    )
                )
                assert self.abortable is not None
                raise KafkaException(self.abortable)
            assert self.txn is not None
            c.txns.add_offsets(self.txn, group_metadata.group_id, offsets)

    def commit_transaction(self, timeout: float | None = None) -> None:
        self._serve()  # commit_transaction flushes, which serves delivery reports
        c = self.cluster
        with c.lock:
            self._check_in_txn()
            if self._unsent:
                self._outage(timeout, "Failed to flush all outstanding messages", retriable=True)
            elif c.down:
                self._outage(timeout, "Failed to commit transaction", retriable=True)
            self._check_fenced("Failed to end transaction")
            c.take_txn_failure(self, "commit_transaction")
            assert self.txn is not None
            c.txns.end(self.txn, commit=True)
            self.txn, self.state = None, "Ready"

    def abort_transaction(self, timeout: float | None = None) -> None:
        c = self.cluster
        with c.lock:
            self._check_api()
            if self.fatal is not None:
                raise KafkaException(self.fatal)
            if self.state not in ("InTransaction", "AbortableError"):
                raise KafkaException(fe.state_error(self.state))
            assert self.txn is not None
            if self.txn.registered:
                self._outage(timeout, "Failed to end transaction", retriable=True)
                self._check_fenced("Failed to end transaction")
            c.take_txn_failure(self, "abort_transaction")
        self.purge()
        with c.lock:
            assert self.txn is not None
            c.txns.end(self.txn, commit=False)
            self.txn, self.state, self.abortable = None, "Ready", None

    # -- state ---------------------------------------------------------------------------------

    def _check_api(self) -> None:
        if not self.transactional_id:
            raise KafkaException(
                fe.error(
                    KafkaError._NOT_CONFIGURED,
                    "The Transactional API requires transactional.id to be configured",
                )
            )

    def _check_in_txn(self) -> None:
        self._check_api()
        self._expire_txn()
        if self.fatal is not None:
            raise KafkaException(self.fatal)
        if self.state == "AbortableError" and self.abortable is not None:
            raise KafkaException(self.abortable)
        if self.state != "InTransaction":
            raise KafkaException(fe.state_error(self.state))

    def _outage(self, timeout: float | None, what: str, retriable: bool = True) -> None:
        """A call that needs the broker, while it is down: waits its timeout, then fails."""
        c = self.cluster
        if c.down:
            c.wait_until(c.deadline(timeout), lambda: not c.down)
            if c.down:
                raise KafkaException(
                    fe.error(
                        KafkaError._TIMED_OUT, f"{what}: Local: Timed out", retriable=retriable
                    )
                )

    def _stale(self) -> bool:
        assert self.transactional_id is not None
        return self.cluster.txns.epoch(self.transactional_id) != self.epoch

    def _check_fenced(self, what: str) -> None:
        if self._stale():
            self._become_fatal(fe.fenced(what))
            assert self.fatal is not None
            raise KafkaException(self.fatal)

    def _expire_txn(self) -> None:
        self.cluster.expire_transactions()

    def _become_fatal(self, err: KafkaError) -> None:
        if self.fatal is None:
            self.fatal, self.state, self._raise_fatal = err, "FatalError", True

    def _make_abortable(self, err: KafkaError) -> None:
        if self.state == "InTransaction":
            self.state, self.abortable = "AbortableError", err
