"""Putting dead letters back (`jobstream dlq replay`) and taking them out (`dlq export`).

Both read a T.dlq with consumers/dlq.py's bounded Reader and write an audit record.
Replay republishes each matching record with the job's own headers (job id, trace context,
first enqueue time) to the main topic or a retry tier, keeping its partition.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from config.durations import format_duration, parse_duration
from config.logging import get_logger
from config.settings import Settings
from config.topics import RETRY_MARK, retry_topic
from consumers.dlq import (
    METADATA_TIMEOUT_S,
    QUIET,
    DlqError,
    Filters,
    ProgressCb,
    Reader,
    Result,
    Target,
    list_topics,
    resolve_target,
    scan,
    unreachable,
)
from consumers.protection import RateLimiter, acquire_blocking
from schemas import wire
from schemas.registry import SchemaRegistry

log = get_logger("jobstream.replay")

CHECKPOINT_RECORDS = 500
CHECKPOINT_SECONDS = 2.0


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


def export(settings: Settings, target: str, filters: Filters, out_path: Path, *,
           unmask: bool = False, progress: ProgressCb | None = None,
           registry: SchemaRegistry | None = None, audit: bool = True) -> Result:
    """Matching dead letters as JSON lines: position, headers, payload (masked), base64 value."""
    t = resolve_target(settings, target)
    registry = registry or SchemaRegistry.from_dirs(settings.schema_dirs)
    result = Result("export", t.dlq, str(out_path))
    r = Reader(settings, t.dlq)
    try:
        with out_path.open("w", encoding="utf-8") as f:
            for dl in scan(settings, t.dlq, filters, progress=progress, reader=r):
                payload = dl.payload(registry, unmask)
                b64 = None if dl.value is None else base64.b64encode(dl.value).decode()
                row = {**dl.summary(), "headers": dl.headers, "payload": payload, "value_b64": b64}
                if isinstance(payload, str):
                    row["value_hex_preview"] = dl.hex_preview()
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                result.matched += 1
    except OSError as e:
        raise DlqError(f"cannot write {out_path}: {e.strerror}") from None
    finally:
        r.close()
    result.covered = dict(r.covered)
    if audit:
        from consumers.audit import record_operation

        record_operation(settings, result, filters, {"unmask": unmask})
    return result


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

    @property
    def to_scan(self) -> int:
        return sum(max(0, e - self.starts.get(p, 0)) for p, e in self.ends.items())


def replay_group(dlq: str, to: str) -> str:
    return f"jobstream-replay.{dlq}.{to}"


def replay(settings: Settings, target: str, filters: Filters | None = None, to: str = "origin",
           *, dry_run: bool = False, rate: float | None = None, limit: int | None = None,
           from_start: bool = False, progress: ProgressCb | None = None,
           confirm: Callable[[ReplayPlan], None] | None = None,
           registry: SchemaRegistry | None = None, audit: bool = True) -> Result:
    """Republish matching dead letters to the main topic (or a retry tier), same partition.

    Bounded by the DLQ end offsets taken at start, so jobs that die again meanwhile are not
    replayed in a loop. Progress is the committed offset of the replay group, committed only
    after the producer acknowledged everything before it: a crash replays some records twice
    (the ledger skips jobs that already succeeded), never loses one. Dry runs commit nothing.
    Progress is per (DLQ, destination), not per filter set: records a filtered run passed
    over are not looked at again by a later run unless from_start.
    """
    from producers.publisher import Publisher

    filters = filters or Filters()
    limit = limit if limit is not None else filters.limit
    if rate is not None and rate <= 0:
        raise DlqError(f"rate must be positive, got {rate}")
    topics = list_topics(settings)
    t = resolve_target(settings, target, topics)
    canon, dest, delay = destination(to, t, topics)
    group = replay_group(t.dlq, canon)
    r = Reader(settings, t.dlq, group)
    result = Result("replay", t.dlq, dest, dry_run=dry_run)
    pub: Publisher | None = None
    error: str | None = None
    started = False
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
        plan = ReplayPlan(t.dlq, dest, canon, group, starts, ends, bool(result.resumed_from))
        if confirm is not None:
            confirm(plan)  # raises to abort; nothing has been sent or recorded yet
        started = True
        if not dry_run:
            pub = Publisher(settings, registry, producer_config={"logger": QUIET})
        _run_replay(r, pub, plan, filters, limit, delay, rate, progress, result)
        return result
    except Exception as e:
        error = str(e) or type(e).__name__
        raise
    finally:
        try:
            if pub is not None:
                pub.flush(30)
        finally:
            result.covered = dict(r.covered)
            r.close()
            if audit and started:
                from consumers.audit import record_operation

                extra: dict[str, Any] = {"to": canon, "from_start": from_start, "rate": rate,
                                         "resumed_from": result.resumed_from}
                record_operation(settings, result, filters, extra, error=error)


def _run_replay(r: Reader, pub: Any, plan: ReplayPlan, filters: Filters, limit: int | None,
                delay: float | None, rate: float | None, progress: ProgressCb | None,
                result: Result) -> None:
    failures: list[str] = []
    positions: dict[int, int] = {}  # partition -> next offset to read (what we commit)
    unacked = 0
    last_checkpoint = time.monotonic()
    # burst=1: evenly spaced sends, no burst after a pause.
    limiter = RateLimiter(rate, burst=1) if rate else None

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err.str())

    def checkpoint() -> None:
        nonlocal unacked, last_checkpoint
        if pub is None:
            return  # dry run: never moves saved progress
        left = pub.flush(30)
        if left or failures:
            why = failures[0] if failures else f"{left} records unacknowledged after 30s"
            raise DlqError(f"replay to {plan.destination} failed: {why}; progress is saved up "
                           "to the last acknowledged checkpoint, run again to resume")
        result.replayed += unacked
        unacked = 0
        last_checkpoint = time.monotonic()
        if positions:
            r.consumer.commit(offsets=[TopicPartition(plan.source, p, o)
                                       for p, o in positions.items()], asynchronous=False)

    stopped = False
    for dl in r.read(plan.starts, plan.ends, progress):
        if filters.matches(dl):
            result.matched += 1
            if pub is not None:
                not_before = None if delay is None else int((time.time() + delay) * 1000)
                if limiter is not None:
                    acquire_blocking(limiter)
                pub.send(plan.destination, dl.key, dl.value,
                         replay_headers(dl.raw_headers, dl.ref, not_before),
                         partition=dl.partition, on_delivery=on_delivery)
                unacked += 1
                # DEBUG: an operator follows a job through a replay with log.level=DEBUG;
                # the audit record covers the run as a whole.
                log.debug("replayed", job_id=dl.job_id, job_type=dl.job_type,
                          trace_id=wire.trace_id(dl.headers.get(wire.TRACEPARENT)),
                          replayed_from=dl.ref, topic=plan.destination, partition=dl.partition)
        else:
            result.skipped += 1
        positions[dl.partition] = dl.offset + 1
        if limit is not None and result.matched >= limit:
            stopped = True
            break
        if unacked >= CHECKPOINT_RECORDS or time.monotonic() - last_checkpoint > CHECKPOINT_SECONDS:
            checkpoint()
    if not stopped:
        # Every partition was read to its end; trailing transaction markers are covered too.
        positions.update({p: e for p, e in plan.ends.items() if e > plan.starts.get(p, 0)})
    checkpoint()
