"""Prometheus metrics (names and labels are the public contract). Labelled children are cached
so the hot path does one dict lookup and one lock-free-ish increment per update."""

from __future__ import annotations

import contextlib
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# The one label value of every job type the worker does not know (a typo, a missing header): a
# record's header must not be able to add series.
UNKNOWN_JOB_TYPE = "unknown"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, enabled: bool = True) -> None:
        self.registry = registry or CollectorRegistry()
        self.enabled = enabled
        r = self.registry
        self.jobs = Counter(
            "jobstream_jobs_total",
            "Jobs finished, by outcome.",
            ["job_type", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "jobstream_job_duration_seconds", "Handler run time.", ["job_type"], registry=r
        )
        self.latency = Histogram(
            "jobstream_job_latency_seconds",
            "From first enqueue to finished.",
            ["job_type"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "jobstream_retries_total",
            "Jobs sent to a retry tier.",
            ["job_type", "tier"],
            registry=r,
        )
        self.lag = Gauge(
            "jobstream_consumer_lag",
            "High watermark minus committed offset.",
            ["topic", "partition"],
            registry=r,
        )
        self.in_flight = Gauge("jobstream_in_flight", "Jobs received and not finished.", registry=r)
        self.ledger_entries = Gauge(
            "jobstream_ledger_entries", "Job ids held in ledger views.", registry=r
        )
        self.rebalances = Counter(
            "jobstream_rebalances_total", "Partition assignment changes.", registry=r
        )
        self.aborts = Counter(
            "jobstream_aborted_intervals_total",
            "Commit intervals given up and redone from the last commit (a failed write or "
            "commit, a lost session).",
            registry=r,
        )
        self.breaker_open = Gauge(
            "jobstream_circuit_open",
            "1 while a job type's circuit breaker holds its partitions (open or half open).",
            ["job_type"],
            registry=r,
        )
        self.abandoned = Counter(
            "jobstream_abandoned_threads_total",
            "Sync handler threads still running abandon_after_s past their timeout: their job "
            "was routed while the thread ran on.",
            ["job_type"],
            registry=r,
        )
        # Priority lanes (docs/priorities.md): only job types with lanes have these series.
        self.lane_started_jobs = Counter(
            "jobstream_lane_started_total", "Jobs started, by priority lane.",
            ["job_type", "lane"], registry=r,
        )
        self.lane_wait = Histogram(
            "jobstream_lane_start_latency_seconds",
            "From enqueue (js-enqueued-at) to start, by priority lane.",
            ["job_type", "lane"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.lane_buffered = Gauge(
            "jobstream_lane_buffered", "Jobs of the lane fetched and not finished.",
            ["job_type", "lane"], registry=r,
        )
        self.lane_queued = Gauge(
            "jobstream_lane_queued", "Jobs of the lane ready and waiting for a handler slot.",
            ["job_type", "lane"], registry=r,
        )
        self.lane_paused = Gauge(
            "jobstream_lane_paused", "1 while the lane's partitions do not fetch (its share "
            "of the buffer is full).", ["job_type", "lane"], registry=r,
        )
        # Batches (docs/workflows.md), from the owner of jobstream.batches partitions.
        self.batches_open = Gauge(
            "jobstream_batches_open",
            "Open batches on the jobstream.batches partitions this worker owns.", registry=r)
        self.batch_completions = Counter(
            "jobstream_batch_completions_total",
            "Batches closed: every member final, callback published.", registry=r)
        self.batch_callback_latency = Histogram(
            "jobstream_batch_callback_latency_seconds",
            "From a batch's last member finished to its callback published.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.schedule_firings = Counter(
            "jobstream_schedule_firings_total",
            "Jobs published by a recurring schedule's slots (catch-up included; not triggers).",
            ["schedule"],
            registry=r,
        )
        self.schedule_missed = Counter(
            "jobstream_schedule_missed_slots_total",
            "Slots of a recurring schedule not fired: missed while no worker fired them and "
            "left out by its catch_up.",
            ["schedule"],
            registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._job_types: frozenset[str] | None = None  # None: any (until the worker says)
        # What finished() gathered since the last flush() (the poll thread's own)
        self._counts: dict[tuple[str, str], int] = {}
        self._durations: dict[str, list[float]] = {}
        self._latencies: dict[str, list[float]] = {}

    def limit_job_types(self, job_types: Iterable[str]) -> None:
        """Label values for these job types only; every other name counts as `unknown`."""
        self._job_types = frozenset(job_types)

    def _jt(self, job_type: str) -> str:
        known = self._job_types
        return job_type if known is None or job_type in known else UNKNOWN_JOB_TYPE

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def job_finished(
        self, job_type: str, outcome: str, duration_s: float | None, latency_s: float | None
    ) -> None:
        """A job's outcome, counted at once (finished() and flush() in one)."""
        self.finished(job_type, outcome, duration_s, latency_s)
        self.flush()

    def finished(
        self, job_type: str, outcome: str, duration_s: float | None, latency_s: float | None
    ) -> None:
        """job_finished, gathered until the next flush(): the poll thread's per-job path calls
        this, and flushes every few milliseconds (a counter and two histograms per job cost
        more than the rest of the bookkeeping of a job's outcome)."""
        if not self.enabled:
            return
        job_type = self._jt(job_type)
        key = (job_type, outcome)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        if duration_s is not None:
            values = self._durations.get(job_type)
            if values is None:
                values = self._durations[job_type] = []
            values.append(duration_s)
        if latency_s is not None and latency_s >= 0:
            values = self._latencies.get(job_type)
            if values is None:
                values = self._latencies[job_type] = []
            values.append(latency_s)

    def flush(self) -> None:
        """Apply what finished() gathered: one increment per series and bucket."""
        if self._counts:
            counts, self._counts = self._counts, {}
            for (job_type, outcome), n in counts.items():
                self._child(self.jobs, job_type, outcome).inc(n)
        for metric, gathered in ((self.duration, self._durations),
                                 (self.latency, self._latencies)):
            for job_type, values in gathered.items():
                if values:
                    _observe_all(self._child(metric, job_type), values)
                    values.clear()

    def lane_started(self, job_type: str, lane: str, enqueued_ms: int, now_ms: int) -> None:
        if self.enabled:
            self._child(self.lane_started_jobs, job_type, lane).inc()
            if enqueued_ms:
                self._child(self.lane_wait, job_type, lane).observe(
                    max(0, now_ms - enqueued_ms) / 1000)

    def lane_state(self, job_type: str, lane: str, buffered: int, queued: int,
                   paused: bool) -> None:
        self._child(self.lane_buffered, job_type, lane).set(buffered)
        self._child(self.lane_queued, job_type, lane).set(queued)
        self._child(self.lane_paused, job_type, lane).set(1 if paused else 0)

    def retried(self, job_type: str, tier: str) -> None:
        if self.enabled:
            self._child(self.retries, self._jt(job_type), tier).inc()

    def schedule_fired(self, schedule: str, fired: int, missed: int) -> None:
        if not self.enabled:
            return
        if fired:
            self._child(self.schedule_firings, schedule).inc(fired)
        if missed:
            self._child(self.schedule_missed, schedule).inc(missed)

    def set_breaker(self, job_type: str, state: str) -> None:
        self._child(self.breaker_open, self._jt(job_type)).set(0 if state == "closed" else 1)

    def refresh_lag(self, consumer: Any, tps: list[tuple[str, int]]) -> None:
        """Lag per owned partition: the cached high watermark minus the committed offset. One
        request for all partitions every few seconds, never one per job."""
        if not tps:
            return
        from confluent_kafka import TopicPartition

        try:
            committed = consumer.committed([TopicPartition(*tp) for tp in tps], timeout=2)
        except Exception:
            return  # lag is best effort: never let a slow broker stall the loop further
        for tpo in committed:
            try:
                _, high = consumer.get_watermark_offsets(tpo, cached=True)
            except Exception:
                continue
            base = tpo.offset if tpo.offset >= 0 else 0
            self.set_lag(tpo.topic, tpo.partition, max(0, high - base))

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self._child(self.lag, topic, str(partition)).set(lag)

    def drop_lag(self, topic: str, partition: int) -> None:
        self._children.pop((id(self.lag), topic, str(partition)), None)
        with contextlib.suppress(KeyError):
            self.lag.remove(topic, str(partition))


def _observe_all(child: Any, values: list[float]) -> None:
    """Histogram.observe of each value, with one increment per bucket (the child's own value
    objects, as observe uses them; observe itself where they are not there)."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for v in values:
            child.observe(v)
        return
    counts = [0] * len(bounds)
    last = len(bounds) - 1
    for v in values:  # observe's bucket: the first bound >= v (the last one is +Inf)
        counts[min(bisect_left(bounds, v), last)] += 1
    total.inc(sum(values))
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)
