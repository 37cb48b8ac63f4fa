"""The firer: one thread per worker process; the one that owns jobstream.schedules' only
partition fires every recurring schedule of the worker group (docs/scheduling.md).

- Ownership: consumer group `<worker group>.schedules`. On assignment the partition is read
  from its beginning to the end seen then (read_committed: a previous owner's open transaction
  has ended, committed or aborted, before this owner fires anything).
- Firing: each due slot's job goes to the job type's topic with the job id
  `sched:<name>:<slot in UTC>`, and the schedule's new state record to jobstream.schedules,
  with the consumed offset (carrying the group generation: a former owner cannot commit), in
  one transaction. A slot fires once; two owners for a moment publish the same job id, and the
  ledger drops the repeat.
- Versions: the records carry this pod's version (a hash of its definitions) and the older
  versions it replaced. An owner that reads a record of its group naming its own version as
  older stops firing, and says so once per schedule.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from jobstream.config.logging import get_logger
from jobstream.config.settings import Settings
from jobstream.config.topics import SCHEDULES_TOPIC, main_topic
from jobstream.consumers.metrics import Metrics
from jobstream.consumers.runtime.clients import (
    LogEnds,
    owner_consumer_config,
    owner_producer_config,
)
from jobstream.consumers.scheduling import state as states
from jobstream.consumers.scheduling.cron import plan, slot_id
from jobstream.consumers.scheduling.definitions import Schedule, job_id, version_of
from jobstream.consumers.scheduling.state import State
from jobstream.producers.publisher import Publisher

MAX_WAIT_S = 0.2


class Firer(threading.Thread):
    def __init__(self, settings: Settings, schedules: dict[str, Schedule], group: str,
                 worker_id: str, metrics: Metrics | None = None,
                 on_failure: Callable[[str], None] | None = None) -> None:
        super().__init__(name="jobstream-schedules", daemon=True)
        self.settings = settings
        self.schedules = schedules
        self.worker_group = group
        self.group = f"{group}.schedules"
        self.worker_id = worker_id
        self.version = version_of(schedules)
        self.metrics = metrics
        self.log = get_logger("jobstream.schedules", worker=worker_id)
        self.consumer = Consumer(owner_consumer_config(settings, self.group, 100))
        self.ends = LogEnds(settings, f"{self.group}-ends")
        self.txn_id = f"jobstream-{self.group}-{worker_id}"
        self.producer = self._new_producer()
        # Builds (encodes, validates) the jobs; the transactional producer sends them.
        self.pub = Publisher(settings, make_producer=lambda _conf: self.producer)
        self.states: dict[str, State] = {}
        self.owner = False
        self.restored = False
        self.restore_to = 0
        self.position = 0
        self.dirty: set[str] = set()
        self.warned: set[str] = set()
        self.fired = 0
        self.failures = 0  # transactions failed in a row: the wait before the next grows
        self._stopping = threading.Event()
        self.error: BaseException | None = None
        self._on_failure = on_failure

    def _new_producer(self) -> Producer:
        p = Producer(owner_producer_config(self.settings, self.txn_id, **{
            # a job's key picks its partition as publish does
            "partitioner": "murmur2_random"}))
        p.init_transactions(30)
        return p

    # -- life --------------------------------------------------------------------------------

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        try:
            self.consumer.subscribe([SCHEDULES_TOPIC], on_assign=self._on_assign,
                                    on_revoke=self._on_revoke, on_lost=self._on_revoke)
            self.log.info("schedules_started", group=self.group, version=self.version,
                          schedules=sorted(self.schedules))
            while not self._stopping.is_set():
                for msg in self.consumer.consume(100, timeout=self._wait_s()):
                    self._receive(msg)
                if self.owner and self.restored:
                    self._tick(datetime.now(UTC))
        except:  # noqa: E722 - a bare KafkaError (no Exception) can come out of a callback
            e = sys.exc_info()[1]
            self.error = e
            self.log.error("schedules_failed", error=f"{type(e).__name__}: {e}")
            if self._on_failure is not None:
                self._on_failure("schedules_failed")
        finally:
            for closer in (self.consumer.close, self.ends.close):
                with contextlib.suppress(Exception):
                    closer()
            self.producer.flush(5)

    def _wait_s(self) -> float:
        if not (self.owner and self.restored):
            return MAX_WAIT_S
        now = datetime.now(UTC)
        nxt = [s.cron.next(now) for s in self.schedules.values() if s.enabled]
        soon = min((n for n in nxt if n is not None), default=None)
        if soon is None:
            return MAX_WAIT_S
        # A few ms past the slot: the client counts whole ms (a wait cut to 0 ms before the
        # slot woke up early, and the next one then waited the full 200 ms).
        return min(MAX_WAIT_S, max(0.0, (soon - now).total_seconds()) + 0.003)

    # -- ownership -----------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.states.clear()
        self.dirty.clear()
        self.owner = bool(parts)
        for tp in parts:
            self.restore_to = self.ends.of(tp.topic, tp.partition)[1]
            self.restored = self.restore_to <= 0
            self.position = 0
            tp.offset = OFFSET_BEGINNING
        consumer.assign(parts)
        if self.restored:
            self._restored()
        self.log.info("schedules_assigned", owner=self.owner, offsets=self.restore_to)

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        if parts:
            self.owner = False
            self.restored = False
            self.log.info("schedules_revoked")
        consumer.unassign()

    def _receive(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                if self.owner and not self.restored and (msg.offset() or 0) >= self.restore_to:
                    self._restored()
                return
            if err.fatal():
                raise KafkaException(err)
            self.log.warning("schedules_consumer_error", error=err.str())
            return
        if not self.owner:
            return
        self.position = (msg.offset() or 0) + 1
        name = (msg.key() or b"").decode("utf-8", "replace")
        new = states.decode(msg.value())
        if new is None:
            self.states.pop(name, None)
        else:
            old = self.states.get(name)
            self.states[name] = states.merge(old, new)
            # Another writer (the CLI, a former owner): its change is taken over, and written
            # again by this owner so the topic's last record says what this owner does.
            if self.restored and new.by != self.worker_id and name in self.schedules:
                self.dirty.add(name)
        if not self.restored and self.position >= self.restore_to:
            self._restored()

    def _restored(self) -> None:
        self.restored = True
        for name, st in self.states.items():
            if name in self.schedules and st.version != self.version:
                self.dirty.add(name)  # carry this pod's version (or learn it is older)
        self.log.info("schedules_restored", schedules=len(self.states), offsets=self.restore_to)

    # -- firing ----------------------------------------------------------------------------

    def _tick(self, now: datetime) -> None:
        newer = states.superseded(self.version, self.states, self.worker_group)
        if newer:
            self._say_superseded(newer)
            return
        jobs: list[tuple[str, str, bytes, bytes, list[tuple[str, bytes]]]] = []
        writes: dict[str, State] = {}
        counts: dict[str, tuple[int, int]] = {}
        stamp = slot_id(now)
        for name, sched in self.schedules.items():
            st = self.states.get(name)
            if st is not None and st.group not in (None, self.worker_group):
                if name not in self.warned:  # the name is another worker group's
                    self.warned.add(name)
                    self.log.warning("schedule_name_taken", schedule=name, group=st.group)
                continue
            if st is None or st.removed:  # new here (or defined again): due from now on
                st = State(last_slot=st.last_slot if st else None, since=stamp,
                           paused=st.paused if st else False, group=self.worker_group)
                writes[name] = st
            if not sched.enabled or st.paused:
                if name in self.dirty:
                    writes[name] = st
                continue
            base = st.base() or now
            p = plan(sched.cron, base, now, sched.cfg.catch_up, sched.cfg.max_catch_up)
            for slot in p.fire:
                jobs.append(self._job(name, sched, slot_id(slot)))
            if p.last is not None:
                writes[name] = replace(st, last_slot=slot_id(p.last))
                counts[name] = (len(p.fire), p.missed)
            elif name in self.dirty:
                writes[name] = st
        for name, st in self.states.items():  # removed from the definitions: say so, once
            if (name not in self.schedules and st.group == self.worker_group
                    and not (st.removed and st.version == self.version)):
                writes[name] = replace(st, removed=True)
        if not writes:
            return
        out = {n: self._stamped(n, st) for n, st in writes.items()}
        try:
            self._commit(jobs, out)
        except KafkaException as e:
            self._failed(e)
            return
        self.failures = 0
        self.states.update(out)
        self.dirty -= set(out)
        for name, (fired, missed) in counts.items():
            self.fired += fired
            if self.metrics is not None:
                self.metrics.schedule_fired(name, fired, missed)
            if fired or missed:
                self.log.info("schedule_fired", schedule=name, jobs=fired, missed=missed,
                              slot=out[name].last_slot)

    def _stamped(self, name: str, st: State) -> State:
        return replace(st, version=self.version, previous=states.adopt(self.version, st),
                       group=self.worker_group, by=self.worker_id, at=states.now_text(),
                       removed=name not in self.schedules)

    def _job(self, name: str, sched: Schedule, slot: str
             ) -> tuple[str, str, bytes, bytes, list[tuple[str, bytes]]]:
        cfg = sched.cfg
        topic, jid, value, hdrs = self.pub.build(cfg.job_type, cfg.payload, key=cfg.key,
                                                 job_id=job_id(name, slot))
        return topic, jid, (cfg.key or jid).encode(), value, hdrs

    def _commit(self, jobs: list[tuple[str, str, bytes, bytes, list[tuple[str, bytes]]]],
                writes: dict[str, State]) -> None:
        p = self.producer
        p.begin_transaction()
        try:
            for topic, _jid, key, value, hdrs in jobs:
                h: Any = hdrs
                p.produce(topic, value, key, headers=h)
            for name, st in writes.items():
                p.produce(SCHEDULES_TOPIC, st.encode(), name.encode(), partition=0)
            offsets = [TopicPartition(SCHEDULES_TOPIC, 0, self.position)]
            p.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
            p.commit_transaction(30)
        except KafkaException:
            raise
        except BaseException:
            p.abort_transaction(30)
            raise

    def _failed(self, e: KafkaException) -> None:
        """Nothing of the transaction is visible: the same slots are planned again next tick
        (or by the next owner)."""
        err: Any = e.args[0] if e.args else None
        self.failures += 1
        self.log.warning("schedules_fire_aborted", error=str(err), failures=self.failures)
        try:
            if err is not None and err.fatal():
                raise KafkaException(err)
            self.producer.abort_transaction(30)
        except KafkaException:
            self.producer = self._new_producer()
        # A lasting cause (a job type's topic missing): 0.2 s, then doubling up to 5 s.
        self._stopping.wait(min(5.0, 0.2 * 2 ** (self.failures - 1)))

    def _say_superseded(self, newer: dict[str, str]) -> None:
        for name in self.schedules:
            if name in self.warned:
                continue
            self.warned.add(name)
            seen = newer.get(name) or next(iter(newer.values()))
            self.log.warning(
                "schedule_version_superseded", schedule=name, version=self.version,
                newer=seen, note="this worker's schedule definitions are older than ones "
                "on jobstream.schedules: it no longer fires this schedule (a worker with "
                "the newer definitions does)")


def start_firer(settings: Settings, group: str, worker_id: str, metrics: Metrics | None = None,
                on_failure: Callable[[str], None] | None = None) -> Firer | None:
    """The worker's firer thread, started; None when no schedule is defined here. A schedule
    whose payload its job type's schema refuses is a SettingsError naming the schedule."""
    from jobstream.config.settings import SettingsError
    from jobstream.consumers.jobs import declared_schedules
    from jobstream.consumers.scheduling.definitions import collect
    from jobstream.producers.errors import InvalidJob
    from jobstream.schemas.registry import SchemaRegistry

    schedules = collect(settings, declared_schedules())
    registry = SchemaRegistry.from_dirs(settings.schema_dirs)
    problems = []
    for name, s in schedules.items():
        try:
            registry.encode(s.cfg.job_type, s.cfg.payload)
        except (InvalidJob, ValueError, KeyError) as e:
            problems.append(f"schedule {name!r}: job type {s.cfg.job_type!r}: {e}")
    if problems:
        raise SettingsError("invalid schedules:\n  " + "\n  ".join(problems))
    if not schedules:
        # No thread (no group to join, no transactional id) in a worker without schedules:
        # most have none. So a deploy that removes the last schedule marks nothing removed.
        return None
    states.ensure_topic(settings)
    # A firing to a missing topic would fail its transaction after a 10 s wait, every time,
    # holding up every other schedule: refuse it here, naming the schedule.
    have = states.topic_names(settings)
    missing = sorted({f"schedule {name!r}: topic {topic} does not exist; create it with "
                      "`jobstream topics apply`"
                      for name, s in schedules.items() if s.enabled
                      for topic in [main_topic(s.cfg.job_type, settings.jobs.get(s.cfg.job_type))]
                      if topic not in have})
    if missing:
        raise SettingsError("invalid schedules:\n  " + "\n  ".join(missing))
    f = Firer(settings, schedules, group, worker_id, metrics, on_failure)
    f.start()
    return f
