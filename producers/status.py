"""Looking a job up: read what the topics say about one job id and fold it into a JobStatus.

A job's records all sit in one partition number p, the one its key hashes to (the router keeps
the partition number on every tier): its T.history records, its T.ledger entry, and, while it
is not yet taken, the job itself in T's unconsumed tail. A lookup reads those three partitions
(read_committed, never joining a group or committing) and folds them (schemas/lifecycle.py).
Without a key it reads the partition the job id hashes to first (publish's default key is the
id), and when that knows nothing of the job, every other partition; once the job is found, only
its partition is followed. `since_ms` starts each read at that time (the broker's time index),
so an old partition is not read from its beginning. `JobLookup.refresh` goes on from where it
stopped, so waiting for a job costs a read of what is new, not of the whole partition again.

History is bounded by its retention (`history_retention_ms`); the ledger keeps completions for
the ledger TTL. A job older than both is `unknown`, which `jobs show` says in those words.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings
from jobstream.config.topics import job_topics
from jobstream.producers.errors import check_id, check_key
from jobstream.schemas import history, wire
from jobstream.schemas.ledger_entry import cancel_key, decode_entry
from jobstream.schemas.lifecycle import JobStatus, fold
from jobstream.schemas.partitioner import partition_for

T = TypeVar("T")
# Answers while leaders and coordinators are elected (a new topic or group, a broker restart);
# librdkafka does not flag all of them retriable.
_ELECTING = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
             KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
             KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._WAIT_COORD)
# The ledger keys these by job id; its retried/dead_lettered entries are position marks.
_LEDGER_FINAL = ("succeeded", "cancelled")
_QUEUED_SCAN = 200_000  # most records of T's unconsumed tail read to find a queued job


class JobLookupError(RuntimeError):
    """The job cannot be looked up (a topic missing, the broker unreachable)."""


@dataclass
class _Source:
    tp: TopicPartition
    end: int
    done: bool = False
    eof_at: int = -1  # the end offset of the last EOF event read

    def reopen(self, high: int) -> None:
        """Read on to `high` unless an EOF event at or past it was already read: records that
        came while another partition was read are taken, EOF event included, in that read."""
        if high > self.end and high > self.eof_at:
            self.end, self.done = high, False


@dataclass
class _Found:
    history: list[dict[str, Any]] = field(default_factory=list)
    ledger_state: str | None = None
    cancelled: bool = False  # a `!cancel/<id>` entry (producers/cancel.py)
    queued_at: int | None = None  # offset in T when seen waiting there
    partition: int | None = None  # where a record of the job was found
    key: bytes | None = None  # the key its records carry (history or T), when one was read


class JobLookup:
    """Reads one job's records; `refresh()` reads what is new and returns the status."""

    def __init__(self, settings: Settings, job_type: str, job_id: str,
                 key: str | None = None, *, since_ms: int | None = None,
                 timeout: float = 30.0) -> None:
        check_id("job_id", job_id)
        if key is not None:
            check_key(key)
        self.job_type, self.job_id = job_type, job_id
        self._id_bytes = job_id.encode()
        self.key = key.encode() if key is not None else None
        self._cancel_key = cancel_key(job_id).encode()
        self.timeout, self.since_ms = timeout, since_ms
        topics = job_topics(job_type, settings.job(job_type))
        self._topics = topics
        self._consumer = Consumer(client_config(settings.kafka, **{
            "group.id": settings.worker.group_id,  # assign() only: for committed(), never joins
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            # A partition at its end is long-polled, and the offset requests of partitions
            # added later queue behind that fetch on the connection: 0.4 s each at 500 ms.
            "fetch.wait.max.ms": 10,
            "max.partition.fetch.bytes": 8 << 20,  # a long partition in fewer round trips
        }))
        self._found = _Found()
        self._sources: dict[tuple[str, int], _Source] = {}
        try:
            self._n = self._partitions(topics.history, topics.ledger, topics.main)
            self.partition = partition_for(self.key or self._id_bytes, self._n)
            self._searched = self.key is not None  # every partition it can be in was read
            self._add([self.partition])
        except BaseException:
            self._consumer.close()
            raise

    def _partitions(self, *names: str) -> int:
        try:
            md = self._consumer.list_topics(timeout=self.timeout)
        except KafkaException as e:
            raise JobLookupError(f"the broker did not answer: {e.args[0]}") from None
        counts = set()
        for name in names:
            t = md.topics.get(name)
            if t is None or t.error is not None:
                raise JobLookupError(f"topic {name} does not exist: run `jobstream topics apply`")
            counts.add(len(t.partitions))
        if len(counts) != 1:
            raise JobLookupError(f"{', '.join(names)} have different partition counts {counts}")
        return counts.pop()

    def _add(self, partitions: list[int]) -> None:
        """Start reading these partitions of T.history, T.ledger and T's unconsumed tail too
        (added to what is read already, whose positions stay)."""
        added: list[_Source] = []
        main = self._topics.main
        committed = {tp.partition: int(tp.offset) for tp in self._ask(
            "reading the workers' committed offsets", lambda: self._consumer.committed(
                [TopicPartition(main, p) for p in partitions], timeout=5))}
        for p in partitions:
            for name in (self._topics.history, self._topics.ledger):
                low, high = self._watermarks(TopicPartition(name, p))
                start = max(low, self._since(name, p, high))
                added.append(_Source(TopicPartition(name, p, start), high))
            low, high = self._watermarks(TopicPartition(main, p))
            start = max(committed[p] if committed[p] >= 0 else low, low, high - _QUEUED_SCAN,
                        self._since(main, p, high))
            added.append(_Source(TopicPartition(main, p, start), high))
        for s in added:
            s.done = s.tp.offset >= s.end
            self._sources[(s.tp.topic, s.tp.partition)] = s
        self._consumer.incremental_assign([s.tp for s in added])

    def _since(self, topic: str, p: int, high: int) -> int:
        """The first offset at or after since_ms (0 without it; the end when none is)."""
        if self.since_ms is None:
            return 0
        tp = TopicPartition(topic, p, self.since_ms)
        found = self._ask(f"finding {topic}[{p}]'s offset at --since", lambda: int(
            self._consumer.offsets_for_times([tp], timeout=5)[0].offset))
        return found if found >= 0 else high

    def _ask(self, what: str, fn: Callable[[], T]) -> T:
        """A broker request, retried while its error is retriable: right after a topic or group
        is made (or a broker restarts) leaders and coordinators are still being elected."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return fn()
            except KafkaException as e:
                err = e.args[0]
                transient = err.retriable() or err.code() in _ELECTING
                if not transient or time.monotonic() > deadline:
                    raise JobLookupError(f"{what}: {err.str()}") from None
                time.sleep(0.2)

    def _watermarks(self, tp: TopicPartition) -> tuple[int, int]:
        low, high = self._ask(f"reading the offsets of {tp.topic}",
                              lambda: self._consumer.get_watermark_offsets(tp, timeout=5))
        return int(low), int(high)

    def refresh(self) -> JobStatus:
        """Read up to the partitions' ends as of now and fold what was found."""
        self._read(time.monotonic() + self.timeout)
        if not self._searched and self._found.partition is None:
            self._searched = True  # not in its id's partition: it was published with a key
            self._add([p for p in range(self._n) if p != self.partition])
            self._read(time.monotonic() + self.timeout)
        self._narrow()
        f = self._found
        st = fold(self.job_id, self.job_type, f.history, f.ledger_state,
                  cancelled=f.cancelled)
        if st.state == "unknown" and f.queued_at is not None:
            st.state = "queued"
        st.partition = f.partition
        st.key = f.key.decode("utf-8", "replace") if f.key is not None else None
        return st

    def _narrow(self) -> None:
        """Once the job is found, follow only its partition."""
        p = self._found.partition
        if p is None or all(tp_p == p for _, tp_p in self._sources):
            return
        self.partition = p
        self._consumer.incremental_unassign([TopicPartition(t, q) for t, q in self._sources
                                             if q != p])
        self._sources = {k: s for k, s in self._sources.items() if k[1] == p}

    def _read(self, deadline: float) -> None:
        pending = {k for k, s in self._sources.items() if not s.done}
        if not pending:
            self._reopen()
            pending = {k for k, s in self._sources.items() if not s.done}
        hist, ids = self._topics.history, self._id_bytes
        while pending and time.monotonic() < deadline:
            for msg in self._consumer.consume(5000, timeout=0.2):
                err = msg.error()
                if err is None and msg.topic() == hist:
                    # Most records are other jobs': skipped on a byte search, with no call
                    # into the decoding below (1,000,000 records are read in seconds).
                    value = msg.value()
                    if value is None or ids not in value:
                        continue
                where = (msg.topic() or "", msg.partition() or 0)
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(where)
                        source = self._sources.get(where)
                        if source is not None:
                            source.done, source.eof_at = True, msg.offset() or 0
                        continue
                    if err.fatal() or not err.retriable():
                        raise JobLookupError(f"reading {msg.topic()}: {err.str()}")
                    continue
                if where in self._sources:
                    self._take(where, msg.key(), msg.value(), msg.headers(), msg.offset() or 0)
        if pending:
            names = sorted({f"{t}[{p}]" for t, p in pending})
            raise JobLookupError(f"timed out after {self.timeout:g} s reading {names}")

    def _reopen(self) -> None:
        """A later refresh: read on to the partitions' new ends (their EOF events come again
        once the new records are read)."""
        for s in self._sources.values():
            s.reopen(self._watermarks(s.tp)[1])

    def _take(self, where: tuple[str, int], key: bytes | None, value: bytes | None,
              headers: Any, offset: int) -> None:
        topic, p = where
        if topic == self._topics.ledger:
            if key == self._cancel_key:
                self._found.cancelled = value is not None
                self._found.partition = p
                return
            if key != self._id_bytes:
                return
            self._found.partition = p
            if value is None:
                self._found.ledger_state = None
                return
            entry = decode_entry(value)
            status = entry.get("status") if entry is not None else None
            self._found.ledger_state = status if status in _LEDGER_FINAL else None
            return
        if topic == self._topics.history:
            if value is None or self._id_bytes not in value:  # cheap: most records are others'
                return
            try:
                rec = history.decode(value)
            except history.HistoryError:
                return  # not ours: never let a foreign record hide the job
            single = rec["event"] != history.BATCH  # a batch is keyed by its stream
            if single and self.key is not None and key != self.key:
                return
            for ev in history.events(rec):
                if ev["job_id"] == self.job_id:
                    self._found.history.append(ev)
                    self._found.partition = p
                    if single:
                        self._found.key = key
        elif self.key is not None and key != self.key:
            return
        elif wire.decode_headers(headers).get(wire.JOB_ID) == self.job_id:
            self._found.queued_at = offset
            self._found.partition, self._found.key = p, key

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> JobLookup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WaitTimeout(TimeoutError):
    """The job did not reach a final state in time; `.status` is where it stood."""

    def __init__(self, status: JobStatus, timeout: float) -> None:
        super().__init__(f"job {status.job_id} is still {status.state} after {timeout:g} s")
        self.status = status


def status(settings: Settings, job_type: str, job_id: str, key: str | None = None,
           timeout: float = 30.0, since_ms: int | None = None) -> JobStatus:
    with JobLookup(settings, job_type, job_id, key, since_ms=since_ms,
                   timeout=timeout) as lookup:
        return lookup.refresh()


def wait(settings: Settings, job_type: str, job_id: str, key: str | None = None,
         timeout: float = 30.0, interval: float = 0.5, since_ms: int | None = None
         ) -> JobStatus:
    """Block until the job is succeeded, dead-lettered or cancelled; WaitTimeout otherwise."""
    deadline = time.monotonic() + timeout
    with JobLookup(settings, job_type, job_id, key, since_ms=since_ms,
                   timeout=max(timeout, 5.0)) as lookup:
        while True:
            st = lookup.refresh()
            if st.final:
                return st
            if time.monotonic() + interval > deadline:
                raise WaitTimeout(st, timeout)
            time.sleep(interval)
