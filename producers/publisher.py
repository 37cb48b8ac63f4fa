"""The publisher SDK: validate, encode, set the wire headers, produce idempotently."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from jobstream.config.durations import now_ms
from jobstream.config.kafka import client_config
from jobstream.config.logging import get_logger
from jobstream.config.settings import Settings, load_settings
from jobstream.config.topics import base_of, main_topic, scheduled_topic
from jobstream.producers import delayed, delivery, lanes
from jobstream.producers import status as job_status
from jobstream.producers.cancel import CancelResult
from jobstream.producers.connection import ErrorWatch
from jobstream.producers.delivery import DeliveryWatch
from jobstream.producers.errors import (
    DeliveryError,
    InvalidJob,
    PayloadTooLarge,
    PublishError,
    check_id,
    check_key,
    user_headers,
)
from jobstream.producers.limits import RecordLimits
from jobstream.schemas import wire
from jobstream.schemas.lifecycle import JobStatus
from jobstream.schemas.partitioner import partition_for
from jobstream.schemas.registry import SchemaRegistry

__all__ = ["DeliveryError", "InvalidJob", "PayloadTooLarge", "PublishError", "Publisher"]

DeliveryCallback = Callable[[KafkaError | None, Message], None]

# Record overhead beyond key, value and headers (batch and record framing), kept generous so a
# record we accept is never refused by the broker for a few bytes.
_FRAMING_BYTES = 512


def new_job_id() -> str:
    """A random (version 4) UUID as 32 hex digits; uuid.uuid4().hex costs three times this."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return b.hex()


def new_traceparent() -> str:
    ids = os.urandom(24).hex()
    return f"00-{ids[:32]}-{ids[32:]}-01"


class Publisher:
    """Enqueues jobs. Thread-safe; one per process is enough.

    `publish` waits for the broker's acknowledgement; `publish_async` returns the job id at
    once and reports delivery to its `on_delivery` callback or, without one, through `flush`
    and `close` (and so the `with` block), which raise DeliveryError naming every job that was
    not delivered.
    """

    def __init__(
        self,
        settings: Settings,
        registry: SchemaRegistry | None = None,
        *,
        producer_config: Mapping[str, Any] | None = None,
        make_producer: Callable[[dict[str, Any]], Producer] | None = None,
    ) -> None:
        """make_producer: builds the client from its config (the worker's tests pass a fake's)."""
        self.settings = settings
        self.registry = registry or SchemaRegistry.from_dirs(settings.schema_dirs)
        conf = client_config(
            settings.kafka,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                # Same partition for the same key as Java clients (murmur2), so services in
                # other languages publishing the same keys keep per-key order with us.
                "partitioner": "murmur2_random",
            },
        )
        # Rejected credentials are retried for ever by librdkafka: remember why, to say so.
        self.errors = ErrorWatch(settings.kafka)
        self._limits = RecordLimits(settings.kafka, self.errors)
        conf["error_cb"] = self.errors
        conf.update(producer_config or {})
        self.producer = (make_producer or Producer)(conf)
        self.producer_name = f"{settings.kafka.client_id}@{socket.gethostname()}:{os.getpid()}"
        self._fixed: dict[tuple[str, int], tuple[str, wire.HeaderList]] = {}
        self._partitions: dict[str, int] = {}
        self._deliveries = DeliveryWatch()
        self._closed = False
        # One "published" event per job only at DEBUG: publishing is a service's hot path.
        self._log = get_logger("jobstream.publisher") if settings.log.level == "DEBUG" else None

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> Publisher:
        return cls(settings or load_settings(), **kwargs)

    # -- building a record ---------------------------------------------------------------

    def build(
        self,
        job_type: str,
        payload: Mapping[str, Any],
        *,
        key: str | None = None,
        job_id: str | None = None,
        parent_job_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        traceparent: str | None = None,
    ) -> tuple[str, str, bytes, wire.HeaderList]:
        """(topic, job id, value, headers) for a new job; raises before anything is sent."""
        version, value = self.registry.encode(job_type, payload)
        if key is not None:
            check_key(key)
        if job_id is None:
            job_id = new_job_id()
        else:
            check_id("job_id", job_id)
        topic, fixed = self._fixed_headers(job_type, version)
        hdrs = user_headers(headers) if headers else []
        hdrs += fixed
        hdrs.append((wire.JOB_ID, job_id.encode()))
        if not traceparent:  # None or an empty inbound header: start a new trace
            traceparent = new_traceparent()
        else:
            check_id("traceparent", traceparent)
        hdrs.append((wire.TRACEPARENT, traceparent.encode()))
        hdrs.append((wire.ENQUEUED_AT, str(now_ms()).encode()))
        if parent_job_id is not None:
            check_id("parent_job_id", parent_job_id)
            hdrs.append((wire.PARENT_JOB_ID, parent_job_id.encode()))
        return topic, job_id, value, hdrs

    def _fixed_headers(self, job_type: str, version: int) -> tuple[str, wire.HeaderList]:
        """The topic and the headers that are the same for every job of a type and version,
        encoded once: building headers was a third of a publish."""
        got = self._fixed.get((job_type, version))
        if got is None:
            topic = main_topic(job_type, self.settings.jobs.get(job_type))
            got = self._fixed[(job_type, version)] = (
                topic,
                wire.encode_headers(
                    {
                        wire.JOB_TYPE: job_type,
                        wire.SCHEMA_VERSION: version,
                        wire.ATTEMPT: 1,
                        wire.PRODUCER: self.producer_name,
                    }
                ),
            )
        return got

    # -- sending ---------------------------------------------------------------------------

    def publish(
        self,
        job_type: str,
        payload: Mapping[str, Any],
        key: str | None = None,
        job_id: str | None = None,
        parent_job_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        traceparent: str | None = None,
        delay: str | float | None = None,
        run_at: datetime | None = None,
        timeout: float = 30.0,
        priority: str | None = None,
    ) -> str:
        """Validate, encode and send one job; return its id once the broker has it.
        `delay` ("10m", or seconds) or `run_at` (an aware datetime) make it a delayed job: it
        runs at or after that time (docs/scheduling.md); zero or a past time runs it at once.
        `priority`: the job type's lane (docs/priorities.md); default `default`."""
        done = threading.Event()
        result: list[KafkaError | None] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            result.append(err)
            done.set()

        job_id = self.publish_async(
            job_type, payload, key, job_id, parent_job_id, headers, traceparent=traceparent,
            delay=delay, run_at=run_at, on_delivery=on_delivery, priority=priority,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not done.is_set():
            if time.monotonic() > deadline:
                raise PublishError(f"job {job_id}: no acknowledgement within {timeout}s"
                                   f"{self._where()}")
            self.producer.poll(0.05)
        if result[0] is not None:
            raise PublishError(f"job {job_id}: {result[0].str()}")
        return job_id

    def publish_async(
        self,
        job_type: str,
        payload: Mapping[str, Any],
        key: str | None = None,
        job_id: str | None = None,
        parent_job_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        traceparent: str | None = None,
        delay: str | float | None = None,
        run_at: datetime | None = None,
        on_delivery: DeliveryCallback | None = None,
        priority: str | None = None,
    ) -> str:
        """Validate, encode and queue one job; return its id at once. Its delivery is told to
        `on_delivery`, or when there is none, a failure is raised by the next `flush`/`close`.
        `delay`/`run_at`/`priority`: as for `publish`."""
        cfg = self.settings.job(job_type) if (delay is not None or run_at is not None) else None
        due = delayed.due_ms(delay, run_at, cfg.max_delay_s) if cfg is not None else None
        topic, job_id, value, hdrs = self.build(
            job_type,
            payload,
            key=key,
            job_id=job_id,
            parent_job_id=parent_job_id,
            headers=headers,
            traceparent=traceparent,
        )
        if priority is not None:  # its lane's topic, before T.scheduled: the lane's partitions
            topic = lanes.route(job_type, self.settings.job(job_type), priority, topic, hdrs)
        partition = None
        record_key = (key or job_id).encode("utf-8")
        if due is not None:
            # To T.scheduled, keyed by job id, in the partition its key picks on T.
            partition = partition_for(record_key, self._partition_count(topic))
            hdrs.append((wire.RUN_AT, str(due).encode()))
            if key is not None:
                hdrs.append((wire.KEY, record_key))
            topic, record_key = scheduled_topic(base_of(topic)), job_id.encode("utf-8")
        if on_delivery is None:
            on_delivery = self._deliveries.callback(job_id, topic)
        self.send(topic, record_key, value, hdrs, partition=partition, on_delivery=on_delivery)
        if self._log is not None:
            self._log.debug(
                "published",
                job_id=job_id,
                parent_job_id=parent_job_id,
                job_type=job_type,
                topic=topic,
                trace_id=wire.trace_id(dict(hdrs).get(wire.TRACEPARENT)),
            )
        return job_id

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: wire.HeaderList,
        *,
        partition: int | None = None,
        on_delivery: DeliveryCallback | None = None,
        check_size: bool = True,
        serve: bool = True,
    ) -> None:
        """Produce one prepared record (the worker routes retries and dead letters with this).
        check_size=False leaves the size check to the broker (a last-resort send). serve=False
        leaves delivery reports to the caller's own poll (the worker's loop polls once per
        iteration; a poll per record releases the GIL to 64 handler threads each time)."""
        if self._closed:
            raise PublishError("publisher is closed")
        size = len(key or b"") + len(value or b"")
        for k, v in headers:
            size += len(k) + len(v)
        limit = self.max_record_bytes(topic) if check_size else size + _FRAMING_BYTES
        if size + _FRAMING_BYTES > limit:
            raise PayloadTooLarge(
                f"record for {topic} is {size} bytes; the topic accepts at most "
                f"{limit - _FRAMING_BYTES} (max.message.bytes={limit})"
            )
        kwargs: dict[str, Any] = {"headers": headers}
        if partition is not None:
            kwargs["partition"] = partition
        if on_delivery is not None:
            kwargs["on_delivery"] = on_delivery
        while True:
            try:
                self.producer.produce(topic, value, key, **kwargs)
                break
            except BufferError:
                # Local queue full: serve delivery reports to make room instead of failing.
                self.producer.poll(0.1)
        if serve:
            self.producer.poll(0)

    def _partition_count(self, topic: str) -> int:
        return delayed.partition_count(self.producer, topic, self._partitions)

    def cancel(self, job_type: str, job_id: str, key: str | None = None,
               timeout: float = 30.0, confirm_timeout: float = 10.0) -> CancelResult:
        """Cancel a queued, scheduled or retrying job (producers/cancel.py): the workers skip
        it; a running attempt is not stopped. The result says cancelled, already_final or
        unknown. `key`: the key it was published with, if any."""
        return self.cancel_many(job_type, [(job_id, key)], timeout, confirm_timeout)[0]

    def cancel_many(self, job_type: str, jobs: list[tuple[str, str | None]],
                    timeout: float = 30.0, confirm_timeout: float = 10.0) -> list[CancelResult]:
        """cancel() of each (job id, key), looked up side by side; one audit record."""
        from jobstream.producers.cancel import cancel_many
        self.registry.latest(job_type)  # UnknownJobType before any write
        return cancel_many(self, job_type, jobs, timeout, confirm_timeout)

    def publish_chain(self, ch: Any, key: str | None = None, timeout: float = 30.0) -> str:
        """Publish a `jobstream.chain(...)`: its steps run one after another, each given the
        result of the one before (docs/workflows.md). Returns the first step's job id."""
        from jobstream.producers.chains import publish_chain

        return publish_chain(self, ch, key, timeout)

    def batch(self, job_type: str, payloads: Any, on_complete: Any, on_success: Any = None,
              key: str | None = None, timeout: float = 60.0) -> str:
        """Publish a batch (docs/workflows.md): the members and the batch record in one
        transaction; `on_complete=(job_type, payload)` runs once when every member has a final
        outcome, `on_success` too when none was dead-lettered. Returns the batch id."""
        from jobstream.producers.batches import publish_batch

        return publish_batch(self, job_type, payloads, on_complete=on_complete,
                             on_success=on_success, key=key, timeout=timeout)

    def cancel_batch(self, batch_id: str, timeout: float = 30.0, confirm_timeout: float = 10.0,
                     job_type: str | None = None) -> list[CancelResult]:
        """Cancel the batch's members not yet final (producers/batch_cancel.py); each one's
        result. The batch still closes: on_complete runs with the cancelled count."""
        from jobstream.producers.batch_cancel import cancel_batch

        return cancel_batch(self, batch_id, timeout, confirm_timeout, job_type)

    def max_record_bytes(self, topic: str) -> int:
        """The topic's max.message.bytes (cached); the producer's limit if it cannot be read."""
        return self._limits.max_record_bytes(topic)

    # -- looking a job up (producers/status.py) --------------------------------------------

    def status(self, job_type: str, job_id: str, key: str | None = None,
               timeout: float = 30.0, since_ms: int | None = None) -> JobStatus:
        """Where the job stands now: state, attempts, last error, result. `key`: the key it was
        published with (only its partition is read; without it every partition is searched);
        `since_ms`: read only records from then on."""
        self.registry.latest(job_type)  # UnknownJobType before any read
        return job_status.status(self.settings, job_type, job_id, key, timeout, since_ms)

    def wait(self, job_type: str, job_id: str, key: str | None = None,
             timeout: float = 30.0, since_ms: int | None = None) -> JobStatus:
        """Block until the job succeeded, was dead-lettered or cancelled; raises
        `WaitTimeout` (a TimeoutError, with `.status`) when it has not within `timeout`."""
        self.registry.latest(job_type)
        return job_status.wait(self.settings, job_type, job_id, key, timeout, since_ms=since_ms)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for outstanding deliveries; return how many are still queued. Raises
        DeliveryError naming each job of publish_async (without on_delivery) whose delivery
        failed since the last flush; each failure is raised once."""
        return delivery.flush(self.producer, self._deliveries, timeout, self._where)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued, waiting up to `timeout` seconds, then give up the rest.
        Raises DeliveryError naming every job that was not delivered."""
        if not self._closed:
            self._closed = True
            delivery.close(self.producer, self._deliveries, timeout, self._where)

    def _where(self) -> str:
        return f" (brokers {self.settings.kafka.bootstrap_servers}){self.errors.explain()}"

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except DeliveryError as e:
            if exc is None:
                raise
            # The block's own error stays the one raised; the lost jobs are named on it.
            exc.add_note(f"jobstream: {e}")
