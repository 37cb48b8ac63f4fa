"""The worker's loop (consumers/runtime/) against the in-memory Kafka (tests/support/): each
scenario runs a real Worker on a fake cluster and reads the books from the cluster. Issue 28:
rebalances mid-interval, aborts and rewinds, fencing, lost partitions, strict-order retries,
the DLQ guard, the breaker, delivery failures, shutdown, readiness, both commit modes, hooks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError

from jobstream.consumers.errors import ExitCode
from tests.support.fake_worker import Rig


@pytest.fixture
def rigs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        r.close()


@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch, rigs: list[Rig]):  # type: ignore[no-untyped-def]
    def build(**kwargs: object) -> Rig:
        r = Rig(monkeypatch, **kwargs)  # type: ignore[arg-type]
        rigs.append(r)
        return r

    return build


def test_a_job_runs_once_and_its_ledger_entry_commits_with_its_offset(make) -> None:
    rig = make()
    ids = [rig.publish(i) for i in range(5)]
    rig.start()
    rig.wait(rig.committed_to_end, "offsets committed to the end")
    assert sorted(rig.ledger_keys()) == sorted(ids)
    assert rig.runs.seqs() == {i: 1 for i in range(5)}
    assert rig.stop() == ExitCode.STOPPED


def test_at_least_once_commits_the_offset_after_the_ledger_entry_is_acknowledged(make) -> None:
    rig = make(worker={"mode": "at_least_once"})
    ids = [rig.publish(i) for i in range(5)]
    rig.start()
    rig.wait(rig.committed_to_end, "offsets committed")
    assert sorted(rig.ledger_keys()) == sorted(ids)
    assert rig.runs.seqs() == {i: 1 for i in range(5)}


def test_a_transient_failure_goes_to_the_first_retry_tier(make) -> None:
    rig = make()
    jid = rig.publish(0, "fail_until:9")
    rig.start()
    tier = rig.topics.retries[0]
    rig.wait(lambda: rig.ids(tier) == [jid], "the retry record")
    rig.wait(rig.committed_to_end, "the source offset committed")
    assert rig.ids(rig.topics.dlq) == []


def test_a_permanent_failure_goes_to_the_dlq_at_once(make) -> None:
    rig = make()
    jid = rig.publish(0, "permanent")
    rig.start()
    rig.wait(lambda: rig.ids(rig.topics.dlq) == [jid], "the dead letter")
    rig.wait(rig.committed_to_end, "committed")
    assert rig.runs.seqs() == {0: 1} and rig.ids(rig.topics.retries[0]) == []


def test_a_record_that_does_not_decode_is_dead_lettered_without_running(make) -> None:
    rig = make()
    rig.cluster.producer({}).produce(rig.topics.main, b"\x00garbage", b"k", partition=0)
    rig.start()
    rig.wait(lambda: len(rig.values(rig.topics.dlq)) == 1, "the dead letter")
    rig.wait(rig.committed_to_end, "committed")
    assert rig.runs.seqs() == {}


def test_a_job_in_the_ledger_is_not_run_again(make) -> None:
    rig = make()
    rig.publish(0)
    rig.start()
    rig.wait(rig.committed_to_end, "first run committed")
    assert rig.stop() == ExitCode.STOPPED
    # the same record again (a publisher's retry): the ledger knows its job id
    [first] = rig.values(rig.topics.main)
    rig.cluster.producer({}).produce(rig.topics.main, first.value(), first.key(),
                                     partition=first.partition(), headers=first.headers())
    rig.start()
    rig.wait(rig.committed_to_end, "duplicate committed")
    assert rig.runs.seqs() == {0: 1}
    assert len(rig.ledger_keys()) == 1


def test_a_rebalance_mid_interval_commits_what_finished_and_hands_over_the_rest(make) -> None:
    rig = make(worker={"commit_interval_ms": 60_000})
    ids = [rig.publish(i) for i in range(10)]
    a = rig.start()
    rig.wait(lambda: sum(rig.runs.seqs().values()) == 10, "all ran on a")
    rig.start()  # b joins: the group rebalances while a's interval is open
    rig.wait(lambda: len(rig.cluster.groups["g"].members) == 2, "b joined")
    rig.wait(rig.committed_to_end, "a committed on revoke")
    assert sorted(rig.ledger_keys()) == sorted(ids)
    assert rig.runs.seqs() == {i: 1 for i in range(10)}, "nothing redone by b"
    assert a.interval.last is not None


def test_an_abort_rewinds_and_redoes_the_interval_with_handlers_still_running(make) -> None:
    rig = make()
    rig.cluster.fail_transaction("commit_transaction", KafkaError._TIMED_OUT,
                                 txn_requires_abort=True, reason="injected")
    ids = [rig.publish(i) for i in range(4)]
    rig.start()
    rig.wait(rig.committed_to_end, "committed after the redo")
    assert sorted(rig.ledger_keys()) == sorted(ids), "each ledger entry once, none aborted"
    assert all(n in (1, 2) for n in rig.runs.seqs().values())
    assert rig.workers[0].metrics.aborts._value.get() >= 1


def test_a_fenced_producer_is_renewed_and_the_interval_redone(make) -> None:
    """The broker fenced our producer at its commit (it timed our transaction out in an
    outage): a new producer under the same id, and the interval redone, nothing lost."""
    rig = make()
    rig.cluster.fail_transaction("commit_transaction", KafkaError._FENCED, fatal=True,
                                 reason="injected: producer fenced")
    ids = [rig.publish(i) for i in range(3)]
    w = rig.start()
    rig.wait(lambda: w.interval.last is not None and w.interval.committer.fenced is False
             and rig.committed_to_end(), "committed by a renewed producer")
    assert sorted(rig.ledger_keys()) == sorted(ids)
    assert rig.codes == {}, "still running"


def test_lost_partitions_commit_nothing_and_are_redone(make) -> None:
    rig = make(worker={"commit_interval_ms": 60_000, "commit_max_records": 1000})
    ids = [rig.publish(i) for i in range(3)]
    w = rig.start()
    rig.wait(lambda: sum(rig.runs.seqs().values()) == 3, "ran")
    rig.cluster.lose(w.consumer)  # the session expired mid-interval
    rig.wait(lambda: rig.runs.seqs() == {0: 2, 1: 2, 2: 2}, "redone after rejoining")
    assert rig.cluster.committed("g") == {}, "nothing of the lost interval committed"
    assert rig.ledger_keys() == [], "its ledger entries aborted with it"
    assert rig.stop() == ExitCode.STOPPED
    assert rig.committed_to_end() and sorted(rig.ledger_keys()) == sorted(ids)


def test_a_revoke_while_a_strict_order_retry_waits_leaves_it_to_the_next_owner(make) -> None:
    rig = make(job={"ordering": "strict", "retry_tiers": ["50ms", "100ms"]}, partitions=1)
    rig.publish(0, "fail_until:3", key="k")
    rig.publish(1, key="k")
    rig.start()
    rig.wait(lambda: rig.runs.seqs().get(0, 0) >= 1, "the first attempt")
    rig.start()  # rebalance: one partition, one of them owns it
    rig.wait(rig.committed_to_end, "both done in the end", timeout=15)
    order = [s for s, _ in rig.runs.log]
    assert order.index(1) > max(i for i, s in enumerate(order) if s == 0), "key order kept"
    assert rig.topics.retries == () and rig.ids(rig.topics.dlq) == [], "retried in place"


def test_the_dlq_guard_stops_the_worker_before_the_dead_letter_that_trips_it(make) -> None:
    rig = make(worker={"dlq_guard": {"max_ratio": 0.5, "window_s": 60, "min_jobs": 4}})
    for i in range(6):
        rig.publish(i, "permanent", key="k")
    rig.start()
    assert rig.exited() == ExitCode.DLQ_GUARD
    assert len(rig.ids(rig.topics.dlq)) < 6


def test_the_breaker_opens_and_lets_a_probe_through(make) -> None:
    rig = make(job={"circuit_breaker": {"failure_ratio": 0.5, "window_s": 30, "min_calls": 3,
                                        "cooldown_s": 0.2}, "max_attempts": 1})
    for i in range(3):
        rig.publish(i, "permanent" if False else "fail_until:9", key="k")
    w = rig.start()
    rig.wait(lambda: len(rig.ids(rig.topics.dlq)) == 3, "three failures")
    gate = w.dispatcher.gates["test.echo"]
    assert gate.breaker is not None
    rig.publish(10)
    rig.wait(lambda: rig.runs.seqs().get(10) == 1, "the probe ran", timeout=5)
    rig.wait(rig.committed_to_end, "committed")


def test_a_retry_record_that_cannot_be_written_aborts_and_is_written_once(make) -> None:
    rig = make()
    tier = rig.topics.retries[0]
    rig.cluster.fail_next_produce(tier, KafkaError.MSG_SIZE_TOO_LARGE)
    jid = rig.publish(0, "fail_until:9")
    rig.start()
    rig.wait(lambda: rig.ids(tier) == [jid], "the retry record, once")
    rig.wait(rig.committed_to_end, "committed")
    assert rig.ids(tier) == [jid]


def test_shutdown_lets_jobs_in_flight_finish_and_commits_them(make) -> None:
    rig = make()
    ids = [rig.publish(i, "sleep_ms:200") for i in range(3)]
    rig.start()
    rig.wait(lambda: rig.runs.running == 3, "all running")
    assert rig.stop() == ExitCode.STOPPED
    assert sorted(rig.ledger_keys()) == sorted(ids)
    assert rig.committed_to_end()


def test_readiness_waits_for_the_ledger_restore(make) -> None:
    rig = make()
    w = rig.start()
    rig.wait(lambda: w.health.ready, "ready once joined and restored")
    assert w.group_member.joined and not w.assignment.restoring()


def test_a_hook_can_defer_and_refuse_jobs(make) -> None:
    from jobstream import Hook, Refuse, Verdict

    class Picky(Hook):
        deferred = 0

        def before_start(self, job, now):  # type: ignore[no-untyped-def]
            if job.payload["seq"] == 1:
                return Refuse("seq 1 is not allowed")
            if job.payload["seq"] == 2 and self.deferred < 3:
                self.deferred += 1
                return Verdict.DEFER
            return Verdict.RUN

    picky = Picky()
    rig = make(hooks=[picky])
    refused = rig.publish(1)
    rig.publish(2)
    rig.start()
    rig.wait(lambda: rig.runs.seqs().get(2) == 1, "the deferred job ran in the end")
    rig.wait(lambda: rig.ids(rig.topics.dlq) == [refused], "the refused one dead-lettered")
    assert picky.deferred == 3 and 1 not in rig.runs.seqs()


def test_after_outcome_sees_each_outcome_once(make) -> None:
    from jobstream import Finished, Hook

    class Seen(Hook):
        def __init__(self) -> None:
            self.outcomes: list[str] = []

        def after_outcome(self, finished: Finished) -> None:
            self.outcomes.append(finished.outcome.value)

    seen = Seen()
    rig = make(hooks=[seen])
    rig.publish(0)
    rig.publish(1, "permanent")
    rig.start()
    rig.wait(rig.committed_to_end, "committed")
    rig.wait(lambda: len(seen.outcomes) == 3, "three outcomes")
    assert sorted(seen.outcomes) == ["dead_lettered", "failed", "succeeded"]


def test_a_fatal_consumer_error_stops_the_worker_as_fenced(make) -> None:
    rig = make()
    w = rig.start()
    rig.wait(lambda: w.group_member.joined, "joined")
    rig.cluster.consumer_error(w.consumer, KafkaError._FENCED, fatal=True)
    assert rig.exited() == ExitCode.FENCED


def test_keyed_jobs_run_in_order(make) -> None:
    rig = make(partitions=1)
    for i in range(20):
        rig.publish(i, key="same")
    rig.start()
    rig.wait(rig.committed_to_end, "committed")
    assert [s for s, _ in rig.runs.log] == list(range(20))


def test_at_least_once_a_failed_retry_write_is_redone_not_lost(make) -> None:
    """No transaction to abort here: the failed delivery itself must break the interval, or the
    offset would stay unfinished and the job never be routed."""
    rig = make(worker={"mode": "at_least_once"})
    tier = rig.topics.retries[0]
    rig.cluster.fail_next_produce(tier, KafkaError.MSG_SIZE_TOO_LARGE)
    jid = rig.publish(0, "fail_until:9")
    rig.start()
    rig.wait(lambda: rig.ids(tier) == [jid], "the retry record, after the redo")
    rig.wait(rig.committed_to_end, "committed")


def test_at_least_once_a_parent_waiting_for_its_childs_ack_is_polled_for_like_a_result(
        make) -> None:
    """The parent's outcome (its ledger entry) is written once its children are acknowledged:
    those reports are a job's end due, not the 5 ms poll of reports nothing waits on."""
    import time

    from jobstream.consumers.runtime.poll import ACKS_POLL_S

    rig = make(worker={"mode": "at_least_once"})
    w = rig.start()
    rig.wait(lambda: w.group_member.joined, "the worker in the group")
    producer, consumer = w.interval.producer, w.consumer
    real_poll, real_produce, real_consumer_poll = producer.poll, producer.produce, consumer.poll
    held_until = [0.0]
    seen: list[tuple[bool, float]] = []

    def produce(*args: object, **kwargs: object) -> None:
        held_until[0] = time.monotonic() + 0.03  # the broker's round trip
        real_produce(*args, **kwargs)

    def poll(timeout: float | None = None) -> int:
        return 0 if time.monotonic() < held_until[0] else real_poll(timeout)

    def consumer_poll(timeout: float | None = None) -> object:
        seen.append((bool(w.deliver.gated), timeout or 0.0))
        return real_consumer_poll(timeout)

    producer.produce, producer.poll, consumer.poll = produce, poll, consumer_poll
    parent = rig.publish(0, "child")
    rig.wait(lambda: parent in rig.ledger_keys(), "the parent's ledger entry")
    waiting = [timeout for gated, timeout in seen if gated]
    assert waiting and max(waiting) < ACKS_POLL_S


def test_an_idle_loop_waits_in_poll_without_a_consume_call_each_pass(make) -> None:
    """Nothing to fetch: each pass is one waiting poll, not a consume() that finds nothing and
    then the poll; the records that come are all handled."""
    import threading

    rig = make()
    w = rig.start()
    rig.wait(lambda: w.group_member.joined, "the worker in the group")
    calls = {"consume": 0, "poll": 0}
    lock = threading.Lock()
    consumer = w.consumer
    real_consume, real_poll = consumer.consume, consumer.poll

    def consume(*args: object, **kwargs: object) -> object:
        with lock:
            calls["consume"] += 1
        return real_consume(*args, **kwargs)

    def poll(*args: object, **kwargs: object) -> object:
        with lock:
            calls["poll"] += 1
        return real_poll(*args, **kwargs)

    consumer.consume, consumer.poll = consume, poll
    rig.wait(lambda: calls["poll"] >= 20, "20 idle passes")
    with lock:
        assert calls["consume"] <= 1, calls  # (the pass already under way)
    ids = [rig.publish(i) for i in range(30)]
    rig.wait(rig.committed_to_end, "offsets committed to the end")
    assert sorted(rig.ledger_keys()) == sorted(ids)
    assert calls["consume"] >= 1  # a record polled: the next pass takes a batch
