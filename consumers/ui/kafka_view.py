"""What the console reads from Kafka: per job type its topics' offsets, the worker group's
committed offsets and members, counts in time windows. A few batched admin calls per page
(one per offset kind for every partition of every job type), cached for `ui.cache_s`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, KafkaException
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient, OffsetSpec

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings
from jobstream.config.topics import JobTopics, job_topics
from jobstream.consumers.ops.dlq import DlqError
from jobstream.consumers.ops.dlq_reader import METADATA_TIMEOUT_S, QUIET, unreachable
from jobstream.schemas.registry import SchemaRegistry

WINDOWS = {"5m": 300, "1h": 3600}


@dataclass
class Member:
    """One worker in the group, as the group coordinator knows it."""

    member_id: str
    client_id: str
    host: str
    partitions: list[tuple[str, int]]


@dataclass
class Offsets:
    """Offsets of a set of partitions: low and high watermarks, the first offset at or after
    each window start, the group's committed offset."""

    low: dict[tuple[str, int], int] = field(default_factory=dict)
    high: dict[tuple[str, int], int] = field(default_factory=dict)
    since: dict[str, dict[tuple[str, int], int]] = field(default_factory=dict)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)

    def size(self, topics: Iterable[str]) -> int:
        ts = set(topics)
        return sum(h - self.low.get(k, 0) for k, h in self.high.items() if k[0] in ts)

    def in_window(self, topics: Iterable[str], window: str) -> int:
        """Records written in the window (transaction markers count too: an upper bound)."""
        ts, start = set(topics), self.since.get(window, {})
        return sum(h - start.get(k, h) for k, h in self.high.items() if k[0] in ts)

    def bounds(self, topic: str) -> dict[int, tuple[int, int]]:
        return {p: (self.low.get((t, p), 0), h) for (t, p), h in self.high.items() if t == topic}

    def lag(self, topics: Iterable[str]) -> int:
        ts = set(topics)
        return sum(max(0, h - self.committed.get(k, self.low.get(k, 0)))
                   for k, h in self.high.items() if k[0] in ts)


STALE_S = 60.0  # how old a reading may be to stand in for one that failed


@dataclass
class View:
    """One reading of the cluster for every job type."""

    taken: float
    topics: dict[str, int]  # name -> partition count
    jobs: dict[str, JobTopics]
    offsets: Offsets
    members: list[Member]
    group: str
    group_state: str
    stale: str | None = None  # a refresh failed: why (these figures are the last good ones)

    @property
    def age_s(self) -> float:
        return time.monotonic() - self.taken

    def owner(self, topic: str, partition: int) -> Member | None:
        for m in self.members:
            if (topic, partition) in m.partitions:
                return m
        return None

    def workers_of(self, jt: JobTopics) -> list[Member]:
        consumed = set(jt.consumed)
        return [m for m in self.members if any(t in consumed for t, _ in m.partitions)]


def job_types(settings: Settings) -> list[str]:
    """Configured job types and those with a schema, sorted."""
    known = set(settings.jobs) | set(SchemaRegistry.from_dirs(settings.schema_dirs).job_types())
    return sorted(known)


def _wait(futures: dict[Any, Future[Any]]) -> dict[Any, Any]:
    out = {}
    for k, f in futures.items():
        try:
            out[k] = f.result(timeout=METADATA_TIMEOUT_S + 4)
        except KafkaException:
            continue  # a partition without a leader right now: left out of the figures
    return out


class KafkaView:
    """Reads and caches the cluster's figures; thread-safe (pages are served from threads)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin = AdminClient(client_config(settings.kafka, logger=QUIET))
        self._lock = threading.Lock()
        self._cached: View | None = None
        self._registry_types: list[str] | None = None

    def job_types(self) -> list[str]:
        if self._registry_types is None:
            self._registry_types = job_types(self.settings)
        return self._registry_types

    def view(self) -> View:
        """The cluster's figures, read at most every `ui.cache_s`. When a refresh fails (the
        broker stalled or went away) a reading up to STALE_S old is served marked `stale`, so
        a hiccup shows a banner over the last figures; after that, the error page."""
        with self._lock:
            c = self._cached
            if c is not None and time.monotonic() - c.taken < self.settings.ui.cache_s:
                return c
            try:
                self._cached = self._read()
            except DlqError as e:
                if c is None or time.monotonic() - c.taken > STALE_S:
                    raise
                return replace(c, stale=str(e))
            return self._cached

    def list_topics(self) -> dict[str, int]:
        try:
            md = self.admin.list_topics(timeout=METADATA_TIMEOUT_S)
        except KafkaException:
            raise unreachable(self.settings) from None
        return {n: len(t.partitions) for n, t in md.topics.items() if t.error is None}

    def _read(self) -> View:
        topics = self.list_topics()
        jobs = {j: job_topics(j, self.settings.job(j)) for j in self.job_types()}
        parts = [TP(t, p) for jt in jobs.values() for t in (*jt.consumed, jt.dlq)
                 if t in topics for p in range(topics[t])]
        now_ms = int(time.time() * 1000)
        specs: dict[str, Any] = {
            "low": OffsetSpec.earliest(),  # type: ignore[no-untyped-call]
            "high": OffsetSpec.latest(),  # type: ignore[no-untyped-call]
        }
        for name, secs in WINDOWS.items():
            specs[name] = OffsetSpec.for_timestamp(now_ms - secs * 1000)
        futures = {name: self._offsets(parts, spec) for name, spec in specs.items()}
        group = self.settings.worker.group_id
        committed_f = self.admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=METADATA_TIMEOUT_S)
        described_f = self.admin.describe_consumer_groups(
            [group], request_timeout=METADATA_TIMEOUT_S)
        off = Offsets()
        for name, fs in futures.items():
            got = {(tp.topic, tp.partition): r.offset for tp, r in _wait(fs).items()}
            if name == "low":
                off.low = got
            elif name == "high":
                off.high = got
            else:  # -1: nothing at or after the start, so nothing in the window (high came first)
                off.since[name] = {k: (v if v >= 0 else off.high.get(k, 0))
                                   for k, v in got.items()}
        try:
            res = committed_f[group].result(timeout=METADATA_TIMEOUT_S + 4)
            off.committed = {(tp.topic, tp.partition): tp.offset
                             for tp in res.topic_partitions or [] if tp.offset >= 0}
        except KafkaException:
            off.committed = {}  # the group never committed: lag counts from the low watermark
        members, state = [], "unknown"
        try:
            desc = described_f[group].result(timeout=METADATA_TIMEOUT_S + 4)
            state = str(getattr(desc.state, "name", desc.state)).lower()
            for m in desc.members or []:
                tps = m.assignment.topic_partitions if m.assignment else []
                members.append(Member(m.member_id, m.client_id, m.host,
                                      [(tp.topic, tp.partition) for tp in tps]))
        except KafkaException:
            pass
        return View(time.monotonic(), topics, jobs, off, members, group, state)

    def _offsets(self, parts: list[TP], spec: Any) -> dict[TP, Future[Any]]:
        if not parts:
            return {}
        try:
            return dict(self.admin.list_offsets(
                {tp: spec for tp in parts}, isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=METADATA_TIMEOUT_S))
        except KafkaException:
            raise unreachable(self.settings) from None

    def throughput(self, topic: str, partitions: int, buckets: int = 12,
                   span_s: int = 3600) -> list[int]:
        """Records written to `topic` per bucket over the last span_s seconds, oldest first."""
        now_ms = int(time.time() * 1000)
        step = span_s * 1000 // buckets
        tps = [TP(topic, p) for p in range(partitions)]
        starts = [now_ms - span_s * 1000 + i * step for i in range(buckets)]
        futures = [self._offsets(tps, OffsetSpec.for_timestamp(t)) for t in starts]
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        high = {tp.partition: r.offset for tp, r in _wait(self._offsets(tps, latest)).items()}
        cuts = [{tp.partition: (r.offset if r.offset >= 0 else high.get(tp.partition, 0))
                 for tp, r in _wait(f).items()} for f in futures]
        cuts.append(high)
        return [sum(max(0, cuts[i + 1].get(p, 0) - cuts[i].get(p, 0)) for p in high)
                for i in range(buckets)]
