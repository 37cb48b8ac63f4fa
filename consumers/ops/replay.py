"""Putting dead letters back: `jobstream dlq replay`.

Reads a T.dlq with consumers/dlq_reader.py's bounded Reader and writes an audit record.
Replay republishes each matching record with the job's own headers (job id, trace context,
first enqueue time) to the main topic or a retry tier, keeping its partition.

Saved progress is the committed offset of a progress group per (DLQ, destination, filter
set; see Filters.progress_key), committed only after the broker acknowledged everything
before it: a crash replays some records twice (the ledger skips jobs that already
succeeded), never loses one. Ctrl-C and SIGTERM stop between records (consumers/interrupt.py);
the run then waits for what it sent, saves progress up to it and audits itself as
`interrupted` with those counts.
"""

from __future__ import annotations

import hashlib
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from jobstream.config.durations import format_duration, parse_duration
from jobstream.config.logging import get_logger
from jobstream.config.settings import Settings
from jobstream.config.topics import PRIORITY_MARK, RETRY_MARK, lane_topic, retry_topic
from jobstream.consumers.ops import interrupt
from jobstream.consumers.ops.dlq import DeadLetter, DlqError, Filters, Result
from jobstream.consumers.ops.dlq_reader import (
    METADATA_TIMEOUT_S,
    QUIET,
    ProgressCb,
    Reader,
    Target,
    list_topics,
    resolve_target,
    unreachable,
)
from jobstream.consumers.runtime.protection import RateLimiter, acquire_blocking
from jobstream.producers.lanes import lane_destination
from jobstream.schemas import wire
from jobstream.schemas.registry import SchemaRegistry

log = get_logger("jobstream.replay")

CHECKPOINT_RECORDS = 500
CHECKPOINT_SECONDS = 2.0
AUDITED_REFS = 1000  # at most this many too-large references in one audit record

# (dead letter reference, job id, why): a record left in the DLQ, told as it happens
SkipCb = Callable[[str, str | None, str], None]


def replay_headers(raw: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]], ref: str,
                   not_before_ms: int | None = None) -> wire.HeaderList:
    """The job's own headers as first published (bytes untouched), attempt 1, no failure
    headers, and where it came from. A not-before is set only for a retry-tier destination."""
    drop = {*wire.FAILURE_HEADERS, wire.ATTEMPT, wire.NOT_BEFORE, wire.REPLAYED_FROM}
    out = [(k, v) for k, v in raw if k not in drop]
    extra: dict[str, str | int] = {wire.ATTEMPT: 1, wire.REPLAYED_FROM: ref}
    if not_before_ms is not None:
        extra[wire.NOT_BEFORE] = not_before_ms
    return out + wire.encode_headers(extra)


def destination(spec: str, t: Target, topics: dict[str, int]) -> tuple[str, str, float | None]:
    """--to origin|tier:<delay> -> (canonical spec, topic, tier delay in seconds or None)."""
    if spec == "origin":
        name, canon, delay = t.main, "origin", None
    elif spec.startswith("tier:"):
        try:
            delay = parse_duration(spec[5:])
        except ValueError as e:
            raise DlqError(f"--to {spec}: {e}") from None
        name, canon = retry_topic(t.main, delay), f"tier:{format_duration(delay)}"
        if name not in topics:
            prefix = t.main + RETRY_MARK
            tiers = sorted((n[len(prefix):] for n in topics if n.startswith(prefix)),
                           key=parse_duration)
            raise DlqError(f"--to {spec}: topic {name} does not exist (tiers of {t.main}: "
                           f"{', '.join(tiers) or 'none'})")
    else:
        raise DlqError(f"--to: expected origin or tier:<delay> (e.g. tier:10s), got {spec!r}")
    if name not in topics:
        raise DlqError(f"topic {name} does not exist (create it with `jobstream topics apply`)")
    if topics[name] < t.partitions:
        raise DlqError(f"{name} has {topics[name]} partitions, fewer than {t.dlq} "
                       f"({t.partitions}): replay keeps partition numbers")
    return canon, name, delay


def lane_of_replay(priority: str, canon: str, main: str, topics: dict[str, int]) -> str:
    """--priority: the lane's topic, which must exist; only with --to origin."""
    if canon != "origin":
        raise DlqError(f"--priority goes with --to origin, not --to {canon}")
    name = lane_topic(main, priority)
    if name not in topics:
        mark = main + PRIORITY_MARK
        lanes = ["default", *sorted(n[len(mark):] for n in topics if n.startswith(mark))]
        raise DlqError(f"--priority {priority}: {main} has no such lane (its lanes: "
                       f"{', '.join(lanes)})")
    return name


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay is about to do, shown to the operator before anything is sent."""

    source: str
    destination: str
    to: str
    group: str
    starts: dict[int, int]
    ends: dict[int, int]
    resumed: bool  # some partition starts after progress saved by an earlier run
    filtered: bool = False  # the progress is this filter set's own (Filters.progress_key)

    @property
    def to_scan(self) -> int:
        return sum(max(0, e - self.starts.get(p, 0)) for p, e in self.ends.items())


def replay_group(dlq: str, to: str, filters: Filters | None = None) -> str:
    """The progress group: per DLQ and destination, and per filter set when filtered (an
    unfiltered run, or one filtered by --until only, keeps the name it always had)."""
    base = f"jobstream-replay.{dlq}.{to}"
    key = filters.progress_key() if filters is not None else None
    return base if key is None else f"{base}.f{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def replay(settings: Settings, target: str, filters: Filters | None = None, to: str = "origin",
           *, dry_run: bool = False, rate: float | None = None, limit: int | None = None,
           from_start: bool = False, progress: ProgressCb | None = None,
           confirm: Callable[[ReplayPlan], None] | None = None, on_skip: SkipCb | None = None,
           registry: SchemaRegistry | None = None, audit: bool = True,
           audit_extra: dict[str, Any] | None = None, priority: str | None = None) -> Result:
    """Republish matching dead letters to the main topic (or a retry tier), same partition.

    Bounded by the DLQ end offsets taken at start, so jobs that die again meanwhile are not
    replayed in a loop. Progress is kept per filter set (see replay_group); records left out
    for failing after `until` hold it back, so a later run still finds them. Dry runs commit
    nothing. A record larger than the destination accepts is skipped, told to on_skip and
    counted (Result.too_large); progress moves past it, the record stays in the DLQ.
    audit_extra goes into the audit record (the console names its signed-in user there).
    priority: send every job to that lane of the main topic (docs/priorities.md), audited;
    without it each goes back to its own lane.
    """
    from jobstream.producers.publisher import Publisher

    filters = filters or Filters()
    limit = limit if limit is not None else filters.limit
    if rate is not None and rate <= 0:
        raise DlqError(f"rate must be positive, got {rate}")
    topics = list_topics(settings)
    t = resolve_target(settings, target, topics)
    canon, dest, delay = destination(to, t, topics)
    if priority is not None:
        dest = lane_of_replay(priority, canon, t.main, topics)
        audit_extra = {**(audit_extra or {}), "priority": priority}
    group = replay_group(t.dlq, canon, filters)
    r = Reader(settings, t.dlq, group)
    result = Result("replay", t.dlq, dest, dry_run=dry_run)
    run: _Run | None = None
    error: str | None = None
    stopped_by: str | None = None
    started = finished = False
    try:
        bounds = r.bounds()
        starts = {p: lo for p, (lo, _) in bounds.items()}
        if not from_start:
            try:
                saved = r.consumer.committed([TopicPartition(t.dlq, p) for p in bounds],
                                             timeout=METADATA_TIMEOUT_S)
            except KafkaException:
                raise unreachable(settings) from None
            for tp in saved:
                if tp.offset >= 0 and tp.offset > starts[tp.partition]:
                    starts[tp.partition] = tp.offset
                    result.resumed_from[tp.partition] = tp.offset
        ends = {p: hi for p, (_, hi) in bounds.items()}
        plan = ReplayPlan(t.dlq, dest, canon, group, starts, ends, bool(result.resumed_from),
                          filters.progress_key() is not None)
        if confirm is not None:
            confirm(plan)  # raises to abort; nothing has been sent or recorded yet
        started = True
        pub = None if dry_run else Publisher(settings, registry,
                                             producer_config={"logger": QUIET})
        run = _Run(r, pub, plan, filters, delay, result, on_skip,
                   history=_history_of(settings, t, topics))
        run.priority = priority
        if canon == "origin" and priority is None:  # each job back to its own lane
            mark = t.main + PRIORITY_MARK
            run.lanes = tuple(n for n in topics if n.startswith(mark))
        run.go(limit, rate, progress)
        finished = True
        return result
    except BaseException as e:
        stopped_by = interrupt.signal_name(e)
        error = None if stopped_by else (str(e) or type(e).__name__)
        if isinstance(e, interrupt.Interrupted) and started:
            e.result = result  # the CLI prints what was done; before confirming, nothing was
        raise
    finally:
        interrupt.wrap_up()
        try:
            if run is not None and not finished:
                error = error or run.finish()
        finally:
            result.covered = dict(run.covered if run is not None else r.covered)
            r.close()
            if audit and started:
                from jobstream.consumers.ops.audit import record_operation

                extra: dict[str, Any] = {
                    "to": canon, "from_start": from_start, "rate": rate, "progress": group,
                    "resumed_from": result.resumed_from,
                    "too_large": result.too_large[:AUDITED_REFS] or None,
                    **(audit_extra or {})}
                record_operation(settings, result, filters, extra, error=error,
                                 interrupted=stopped_by)


def _history_of(settings: Settings, t: Target, topics: dict[str, int]) -> str | None:
    """The target's T.history, when its job type keeps one and it exists."""
    from jobstream.config.topics import history_topic, main_topic

    name = history_topic(t.main)
    jt = next((jt for jt in settings.jobs if main_topic(jt, settings.job(jt)) == t.main), None)
    if name not in topics or (jt is not None and not settings.job(jt).history):
        return None
    return name


class _Run:
    """One replay's sending loop and its bookkeeping: what was acknowledged, how far progress
    may move (per partition: the next offset to read), what was left in the DLQ."""

    def __init__(self, r: Reader, pub: Any, plan: ReplayPlan, filters: Filters,
                 delay: float | None, result: Result, on_skip: SkipCb | None,
                 history: str | None = None) -> None:
        self.r, self.pub, self.plan, self.filters = r, pub, plan, filters
        # T.history: a `replayed` record per job sent (None: the job type keeps no history).
        # One chain stream per run and partition (`ops:replay:<run>:<p>`): runs at once
        # never fork a chain.
        self.history = history
        self.run_id = uuid.uuid4().hex[:12]
        self.heads: dict[int, str] = {}
        self.delay, self.result, self.on_skip = delay, result, on_skip
        self.failures: list[str] = []
        self.positions: dict[int, int] = {}
        self.held_back: set[int] = set()  # partitions whose progress an `until` record holds
        self.sent = 0  # since the last checkpoint
        self.covered: dict[int, tuple[int, int]] = {}  # first, last offset handled per partition
        self.lanes: tuple[str, ...] = ()  # the main topic's lane topics (to origin only)
        self.priority: str | None = None  # --priority: every job's new lane

    def go(self, limit: int | None, rate: float | None, progress: ProgressCb | None) -> None:
        # burst=1: evenly spaced sends, no burst after a pause.
        limiter = RateLimiter(rate, burst=1) if rate else None
        last_checkpoint = time.monotonic()
        stopped = False
        for dl in self.r.read(self.plan.starts, self.plan.ends, progress):
            matched = self.filters.matches(dl)
            if matched and limiter is not None and self.pub is not None:
                acquire_blocking(limiter)  # outside held(): Ctrl-C ends a long wait at once
            with interrupt.held():  # a record is sent and accounted for, or neither
                if matched:
                    self.result.matched += 1
                    if self.pub is not None:
                        self._send(dl)
                else:
                    self.result.skipped += 1
                    if self.filters.after_until(dl):
                        self.held_back.add(dl.partition)
                if dl.partition not in self.held_back:
                    self.positions[dl.partition] = dl.offset + 1
                first = self.covered.get(dl.partition, (dl.offset, dl.offset))[0]
                self.covered[dl.partition] = (first, dl.offset)
            if limit is not None and self.result.matched >= limit:
                stopped = True
                break
            if (self.sent >= CHECKPOINT_RECORDS
                    or time.monotonic() - last_checkpoint > CHECKPOINT_SECONDS):
                with interrupt.held():
                    self.checkpoint()
                last_checkpoint = time.monotonic()
        if not stopped:
            # Every partition was read to its end; trailing transaction markers are covered too.
            self.positions.update({p: e for p, e in self.plan.ends.items()
                                   if e > self.plan.starts.get(p, 0) and p not in self.held_back})
        with interrupt.held():
            self.checkpoint()

    def _send(self, dl: DeadLetter) -> None:
        from jobstream.producers.publisher import PayloadTooLarge

        not_before = None if self.delay is None else int((time.time() + self.delay) * 1000)
        dest = self.plan.destination
        if self.lanes:
            dest = lane_destination(dest, self.lanes, dl.raw_headers)
        hdrs = replay_headers(dl.raw_headers, dl.ref, not_before)
        if self.priority is not None:
            hdrs = [h for h in hdrs if h[0] != wire.PRIORITY] + [(wire.PRIORITY,
                                                                 self.priority.encode())]
        try:
            self.pub.send(dest, dl.key, dl.value, hdrs,
                          partition=dl.partition, on_delivery=self._delivered(dl))
        except PayloadTooLarge as e:
            self._too_large(dl.ref, dl.job_id, str(e))
            return
        self.sent += 1
        if self.history is not None and dl.job_id:
            self._record(dl)
        # DEBUG: an operator follows a job through a replay with log.level=DEBUG;
        # the audit record covers the run as a whole.
        log.debug("replayed", job_id=dl.job_id, job_type=dl.job_type,
                  trace_id=wire.trace_id(dl.headers.get(wire.TRACEPARENT)),
                  replayed_from=dl.ref, topic=dest, partition=dl.partition)

    def _record(self, dl: DeadLetter) -> None:
        """The job's `replayed` history record, in its partition, after the job itself (the
        checkpoint waits for both: a run that cannot write history fails like one that cannot
        replay)."""
        from jobstream.consumers.ops.audit import who
        from jobstream.schemas import history
        from jobstream.schemas.chain import GENESIS

        assert self.history is not None and dl.job_id
        rec = history.event(
            "replayed", job_id=dl.job_id, job_type=dl.job_type or "", at=int(time.time() * 1000),
            user=f"{who()}@{socket.gethostname()}", dlq_offset=dl.offset,
            trace_id=wire.trace_id(dl.headers.get(wire.TRACEPARENT)),
            **{"from": dl.ref, "to": self.plan.destination})
        stream = f"{history.OPS_STREAM}:replay:{self.run_id}:{dl.partition}"
        value, digest = history.encode(rec, self.heads.get(dl.partition, GENESIS), stream)
        self.heads[dl.partition] = digest
        ref = dl.ref

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self.failures.append(f"{ref}: its history record: {err.str()}")

        self.pub.send(self.history, dl.key or dl.job_id.encode(), value, [],
                      partition=dl.partition, on_delivery=on_delivery, check_size=False)

    def _delivered(self, dl: DeadLetter) -> Callable[[KafkaError | None, Message], None]:
        ref, job_id = dl.ref, dl.job_id

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.result.replayed += 1
            elif err.code() == KafkaError.MSG_SIZE_TOO_LARGE:  # the broker's limit is lower
                self._too_large(ref, job_id, err.str())
            else:
                self.failures.append(f"{ref}: {err.str()}")

        return on_delivery

    def _too_large(self, ref: str, job_id: str | None, why: str) -> None:
        self.result.too_large.append(ref)
        if self.on_skip is not None:
            self.on_skip(ref, job_id, f"too large for {self.plan.destination}: {why}")

    def checkpoint(self) -> None:
        """Wait for every send, then save progress; raise when any was not acknowledged."""
        if self.pub is None:
            return  # dry run: never moves saved progress
        left = self.pub.flush(30)
        if left or self.failures:
            why = self.failures[0] if self.failures else f"{left} records unacknowledged after 30s"
            raise DlqError(f"replay to {self.plan.destination} failed: {why}; progress is saved "
                           "up to the last acknowledged checkpoint, run again to resume")
        self.sent = 0
        if self.positions:
            self.r.consumer.commit(offsets=[TopicPartition(self.plan.source, p, o)
                                            for p, o in self.positions.items()],
                                   asynchronous=False)

    def finish(self) -> str | None:
        """After an interruption or an error: wait for what was sent and save progress up to
        it when all of it was acknowledged. Returns why progress was not saved, if so."""
        try:
            self.checkpoint()
        except (DlqError, KafkaException) as e:
            return str(e)
        return None
