"""Crash evidence (consumers/runtime/crashes.py) without a broker: what is written when, when a job
is handed to the executor, what a next owner makes of it."""

from __future__ import annotations

from typing import Any

import pytest

from jobstream.config.settings import SettingsError, load_settings
from jobstream.consumers.runtime.crashes import CrashWatch
from jobstream.consumers.runtime.executor import Task
from jobstream.consumers.runtime.ledger import decode_started, encode_started, started_key
from jobstream.consumers.runtime.parts import PartitionState
from jobstream.consumers.runtime.types import Category, Job
from jobstream.schemas.ledger_entry import encode_entry, entry_finished_at

TP = ("jobs.x", 2)
LTP = ("jobs.x.ledger", 2)


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._due: list[Any] = []

    def produce(
        self, topic: str, value: bytes, key: bytes, partition: int, on_delivery: Any
    ) -> None:
        self.sent.append({"topic": topic, "partition": partition, "key": key, "value": value})
        self._due.append(on_delivery)

    def poll(self, _timeout: float) -> int:
        due, self._due = self._due, []
        for cb in due:
            cb(None, None)
        return len(due)

    def flush(self, _timeout: float) -> int:
        self.poll(0)
        return 0

    def __len__(self) -> int:
        return len(self._due)


class FakeLedger:
    def __init__(self, values: dict[str, bytes] | None = None) -> None:
        self.values = values or {}

    def started(self, tp: tuple[str, int], key: str) -> bytes | None:
        assert tp == LTP
        return self.values.get(key)


class FakeExecutor:
    def __init__(self) -> None:
        self.tasks: list[Task] = []

    def submit(self, task: Task) -> None:
        self.tasks.append(task)


class Log:
    def __init__(self) -> None:
        self.events: list[str] = []

    def info(self, event: str, **_kw: Any) -> None:
        self.events.append(event)

    warning = info


def _watch(
    ledger: FakeLedger | None = None, max_crashes: int = 3
) -> tuple[CrashWatch, FakeProducer, FakeExecutor, PartitionState]:
    settings = load_settings(worker={"max_crashes": max_crashes})
    ex = FakeExecutor()
    ps = PartitionState(TP, "x", LTP, False, 1)
    watch = CrashWatch(settings, "me", ledger or FakeLedger(), ex, {TP: ps}, Log())  # type: ignore[arg-type]
    producer = FakeProducer()
    if watch.enabled:
        watch.producer = producer  # type: ignore[assignment]
    return watch, producer, ex, ps


def _start(watch: CrashWatch, ps: PartitionState, offset: int) -> Task:
    job = Job(TP[0], TP[1], offset, b"k", b"", {}, [], job_type="x", job_id=f"j{offset}")
    task = Task(lambda *_: None, (None, None), False, 30.0, (ps.gen, job))
    ps.running += 1  # as Worker._start does before launching
    watch.launch(ps, job, task)
    return task


def _live(producer: FakeProducer) -> dict[int, tuple[tuple[str, int], ...]]:
    value = producer.sent[-1]["value"]
    return decode_started(value) or {}


def test_the_started_value_round_trips_and_is_never_read_as_a_completion() -> None:
    value = encode_started(5_000, "w2", [7, 9], {7: (("w1", 4_000),)})
    assert decode_started(value) == {7: (("w1", 4_000), ("w2", 5_000)), 9: (("w2", 5_000),)}
    assert entry_finished_at(value) is None  # the restore keeps it apart from the job ids
    assert decode_started(encode_entry("succeeded", 1, 1, "w")) is None


def test_a_job_runs_only_once_its_start_is_acknowledged_and_one_write_covers_many() -> None:
    """Issue 26 item 13: the start is recorded before the handler runs, so a handler that ends
    the process at once still leaves its record; jobs arriving while a write is in flight wait
    for the next one (one write per round trip, not per job)."""
    watch, producer, ex, ps = _watch()
    first = _start(watch, ps, 10)
    watch.serve()
    assert [m["key"] for m in producer.sent] == [started_key(*TP).encode()]
    assert (producer.sent[0]["topic"], producer.sent[0]["partition"]) == LTP
    assert ex.tasks == []  # not acknowledged yet
    for offset in (11, 12, 13):
        _start(watch, ps, offset)
    watch.serve()  # acknowledges the first write, then sends one write for the three
    assert len(ex.tasks) == 1 and ex.tasks[0] is first
    assert len(producer.sent) == 2 and set(_live(producer)) == {10, 11, 12, 13}
    watch.serve()
    assert len(ex.tasks) == 4
    ex.tasks[0].func(None, None)  # the handler of offset 10 ends
    writes = len(producer.sent)
    watch.serve()
    assert len(producer.sent) == writes  # an end alone is written a little later...
    _start(watch, ps, 14)
    watch.serve()  # ...or with the next start
    assert set(_live(producer)) == {11, 12, 13, 14}


def test_a_graceful_release_writes_nothing_as_running() -> None:
    """A revoke or shutdown gives running jobs up; the next owner must not count them dead."""
    watch, producer, ex, ps = _watch()
    _start(watch, ps, 4)
    watch.serve()
    watch.serve()
    assert len(ex.tasks) == 1
    held = _start(watch, ps, 5)  # not handed over yet: dropped, its partition count too
    watch.release()
    assert _live(producer) == {}
    assert held not in ex.tasks and ps.running == 1


def test_the_next_owner_counts_deaths_runs_the_last_chance_alone_then_dead_letters() -> None:
    died_once = encode_started(1_000, "w1", [3, 4], {})
    watch, producer, ex, ps = _watch(FakeLedger({started_key(*TP): died_once}))
    job3 = Job(TP[0], TP[1], 3, b"k", b"", {}, [], job_type="x", job_id="j3")
    assert watch.verdict(ps, job3) is None  # one death is shared blame: runs as usual
    _start(watch, ps, 3)
    watch.serve()
    watch.serve()
    assert len(ex.tasks) == 1

    died_twice = encode_started(2_000, "w2", [3, 5], {3: (("w1", 1_000),)})
    watch, producer, ex, ps = _watch(FakeLedger({started_key(*TP): died_twice}))
    other = _start(watch, ps, 6)
    watch.serve()
    watch.serve()
    assert ex.tasks == [other]  # out: the suspect waits for it
    suspect = _start(watch, ps, 3)
    commits: list[int] = []
    watch.step_alone(lambda: commits.append(1))
    watch.serve()
    assert ex.tasks == [other] and commits == []
    other.func(None, None)
    ps.running -= 1  # the other job ended and its result was drained
    _start(watch, ps, 7)  # a newcomer waits while the suspect runs alone
    watch.step_alone(lambda: commits.append(1))
    seen = _live(producer)  # as a next owner would read it: 3 running, 5's earlier death
    assert commits == [1] and seen == {
        3: (("w1", 1_000), ("w2", 2_000), ("me", seen[3][2][1])),
        5: (("w2", 2_000),),
    }
    watch.serve()
    assert ex.tasks == [other, suspect]
    watch.step_alone(lambda: commits.append(1))
    assert commits == [1]  # still running
    ps.running -= 1
    watch.step_alone(lambda: commits.append(1))
    assert commits == [1, 1]  # its outcome committed before anything else runs
    watch.serve()
    watch.serve()
    assert len(ex.tasks) == 3

    died_thrice = encode_started(3_000, "w3", [3], {3: (("w1", 1_000), ("w2", 2_000))})
    watch, producer, ex, ps = _watch(FakeLedger({started_key(*TP): died_thrice}))
    failure = watch.verdict(ps, job3)
    assert failure is not None and failure.category is Category.CRASHED
    assert "died 3 times" in failure.message and "w3" in failure.message
    assert failure.stack.count("died while running it") == 3


def test_max_crashes_zero_is_off_and_one_is_refused() -> None:
    watch, producer, ex, ps = _watch(max_crashes=0)
    assert watch.producer is None
    task = _start(watch, ps, 1)
    assert ex.tasks == [task] and producer.sent == []
    with pytest.raises(SettingsError, match=r"worker\.max_crashes"):
        load_settings(worker={"max_crashes": 1})
