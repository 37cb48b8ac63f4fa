"""Pure decisions around committing: noticing a freeze, and not waiting for ever on a
transactional call that ignores its timeout (librdkafka #5456). Fakes stand in for the
producer here only to make it block or fail on cue; the broker behaviour is in tests/chaos."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from jobstream.config.settings import Mode
from jobstream.consumers.errors import WorkerFenced
from jobstream.consumers.runtime import commit
from jobstream.consumers.runtime.commit import (
    CommitAborted,
    Committer,
    ProducerFenced,
    kafka_exception,
)
from jobstream.consumers.runtime.freeze import FreezeWatch


class FakeProducer:
    def __init__(self, send_offsets: Any = None) -> None:
        self.send_offsets = send_offsets
        self.calls: list[str] = []

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send_offsets_to_transaction(self, tps: Any, group: Any, timeout: float) -> None:
        self.calls.append("send_offsets")
        if self.send_offsets is not None:
            self.send_offsets()

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")


class FakeConsumer:
    def consumer_group_metadata(self) -> object:
        return object()


def test_freeze_watch_sees_a_gap_past_the_limit_and_clears() -> None:
    watch = FreezeWatch(limit_s=0.5)
    try:
        time.sleep(0.3)
        assert watch.alive()
        watch._last -= 5  # what a SIGSTOP looks like to the ticking thread: a late tick
        assert not watch.alive()
        time.sleep(0.3)
        assert watch.check(), "a seen freeze stays seen until the worker deals with it"
        watch.clear()
        assert watch.alive()
    finally:
        watch.close()


def test_send_offsets_that_never_returns_gives_the_producer_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commit, "STUCK_GRACE_S", 0.2)
    release = threading.Event()
    producer = FakeProducer(send_offsets=lambda: release.wait(30))
    c = Committer(Mode.TRANSACTIONAL, FakeConsumer(), producer, timeout_s=0.3)  # type: ignore[arg-type]
    started = time.monotonic()
    try:
        with pytest.raises(ProducerFenced, match="stuck"):
            c.commit({("t", 0): 5})
        assert time.monotonic() - started < 2
        assert not c.in_txn
        assert "commit" not in producer.calls
    finally:
        release.set()


def test_abortable_send_offsets_error_aborts_and_asks_for_a_redo() -> None:
    def fail() -> None:
        raise KafkaException(KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE, "coordinator moved"))

    producer = FakeProducer(send_offsets=fail)
    c = Committer(Mode.TRANSACTIONAL, FakeConsumer(), producer, timeout_s=1)  # type: ignore[arg-type]
    with pytest.raises(CommitAborted):
        c.commit({("t", 0): 5})
    assert producer.calls[-1] == "abort"
    assert not c.in_txn


def test_an_abort_that_keeps_timing_out_gives_the_producer_up() -> None:
    """One timed-out abort is resumed by the next call; a second in a row means librdkafka
    stays in its abort (seen after a broker restart), and only a new producer gets out."""
    timeouts = [True, False, True, True]

    class SlowAbort(FakeProducer):
        def abort_transaction(self, timeout: float) -> None:
            super().abort_transaction(timeout)
            if timeouts.pop(0):
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "abort timed out"))

    producer = SlowAbort()
    c = Committer(Mode.TRANSACTIONAL, FakeConsumer(), producer, timeout_s=1)  # type: ignore[arg-type]
    c.before_produce()
    c.abort()  # timed out once: left open, to be resumed
    assert c.in_txn and not c.fenced
    c.abort()  # went through: the count starts again
    assert not c.in_txn
    c.before_produce()
    c.abort()
    assert c.in_txn and not c.fenced
    with pytest.raises(ProducerFenced, match="timed out 2 times in a row"):
        c.abort()
    assert c.fenced and not c.in_txn
    assert producer.calls.count("abort") == 4


def test_fencing_error_is_producer_fenced() -> None:
    def fenced() -> None:
        raise KafkaException(KafkaError(KafkaError._FENCED, "old epoch", fatal=True))

    producer = FakeProducer(send_offsets=fenced)
    c = Committer(Mode.TRANSACTIONAL, FakeConsumer(), producer, timeout_s=1)  # type: ignore[arg-type]
    with pytest.raises(ProducerFenced):
        c.commit({("t", 0): 5})
    assert "abort" not in producer.calls


def test_kafka_exception_sees_through_a_callback_system_error() -> None:
    fatal = KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    try:
        try:
            raise fatal
        except KafkaException as pending:
            raise SystemError("<built-in function monotonic> returned a result") from pending
    except SystemError as chained:
        assert kafka_exception(chained) is fatal
    assert kafka_exception(fatal) is fatal
    with pytest.raises(SystemError, match="unrelated"):
        kafka_exception(SystemError("unrelated"))
    with pytest.raises(ValueError, match="x"):
        kafka_exception(ValueError("x"))


def test_a_pending_non_kafka_exception_is_raised_as_itself() -> None:
    """A delivery report of a thawed zombie raises WorkerFenced; the next callback of the same
    poll fails with a SystemError chained to it. The worker must stop as fenced (exit 3), not
    as an internal error (exit 70)."""
    try:
        try:
            raise WorkerFenced("could not write jobs.x.ledger: timed out")
        except WorkerFenced as pending:
            raise SystemError("<built-in function monotonic> returned a result") from pending
    except SystemError as chained:
        with pytest.raises(WorkerFenced, match="could not write"):
            kafka_exception(chained)


def test_a_fatal_error_surfacing_as_system_error_in_commit_fences_the_producer() -> None:
    """The fatal error pending while a delivery callback runs inside commit_transaction's flush
    comes out as a SystemError: it must read as the fenced producer it is, not crash."""

    class Fenced(FakeProducer):
        def commit_transaction(self, timeout: float) -> None:
            try:
                raise KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
            except KafkaException as pending:
                raise SystemError("callback returned a result with an exception set") from pending

    c = Committer(Mode.TRANSACTIONAL, FakeConsumer(), Fenced(), timeout_s=0.3)  # type: ignore[arg-type]
    c.before_produce()
    with pytest.raises(ProducerFenced, match="fenced"):
        c.commit({})
    assert not c.in_txn

    class Broken(FakeProducer):
        def commit_transaction(self, timeout: float) -> None:
            raise SystemError("not a Kafka error")

    c = Committer(Mode.TRANSACTIONAL, FakeConsumer(), Broken(), timeout_s=0.3)  # type: ignore[arg-type]
    c.before_produce()
    with pytest.raises(SystemError, match="not a Kafka error"):
        c.commit({})


def test_an_abort_fenced_after_a_timed_out_commit_leaves_the_producer_marked_fenced() -> None:
    """Seen in CI during a broker restart: send_offsets timed out, and the abort that followed
    was fenced (the coordinator had timed the transaction out). The commit reports only the
    timeout, so the committer must remember the fencing: the redo renews the producer then,
    instead of beginning the next transaction on it and stopping the worker (exit 3)."""

    class AbortFenced(FakeProducer):
        def abort_transaction(self, timeout: float) -> None:
            self.calls.append("abort")
            raise KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))

    def timed_out() -> None:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "add offsets timed out"))

    c = Committer(Mode.TRANSACTIONAL, FakeConsumer(), AbortFenced(send_offsets=timed_out))  # type: ignore[arg-type]
    assert not c.fenced
    with pytest.raises(CommitAborted, match="timed out"):
        c.commit({("t", 0): 5})
    assert c.fenced and not c.in_txn


def test_a_fatal_error_reported_by_poll_marks_the_producer_fenced() -> None:
    c = Committer(Mode.TRANSACTIONAL, FakeConsumer(), FakeProducer())  # type: ignore[arg-type]
    assert not c.saw(KafkaError(KafkaError._TIMED_OUT, "slow"))
    assert c.saw(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    assert c.fenced
