"""The bookkeeping behind publish_async's delivery errors, without a broker: which reports are
kept, how close()'s purged jobs are worded, and the one-line message."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from jobstream.producers import DeliveryError, Undelivered
from jobstream.producers import delivery as d


def test_only_failures_are_kept_and_each_is_taken_once() -> None:
    """Issue 26 item 2: a failed delivery of publish_async must reach flush(); a success must
    not, and a failure must not be raised twice."""
    watch = d.DeliveryWatch()
    watch.callback("ok-1", "t")(None, None)  # type: ignore[arg-type]
    watch.callback("lost-1", "t")(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)  # type: ignore[arg-type]
    watch.callback("lost-2", "t")(KafkaError(KafkaError._MSG_TIMED_OUT), None)  # type: ignore[arg-type]
    got, unnamed = watch.take()
    assert [(u.job_id, u.topic) for u in got] == [("lost-1", "t"), ("lost-2", "t")]
    assert unnamed == 0 and not any(d.given_up(u) for u in got)
    assert watch.take() == ([], 0)


def test_jobs_close_gave_up_say_how_long_it_waited() -> None:
    watch = d.DeliveryWatch()
    watch.callback("q", "t")(KafkaError(KafkaError._PURGE_QUEUE), None)  # type: ignore[arg-type]
    watch.callback("f", "t")(KafkaError(KafkaError._PURGE_INFLIGHT), None)  # type: ignore[arg-type]
    got, _ = watch.take(waited_s=2.5)
    assert [u.reason for u in got] == [
        "not acknowledged within 2.5s (never sent)",
        "not acknowledged within 2.5s (sent; it may have been written)",
    ]
    assert all(d.given_up(u) for u in got)


def test_beyond_the_cap_failures_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(d, "MAX_KEPT", 2)
    watch = d.DeliveryWatch()
    for i in range(5):
        watch.callback(f"j{i}", "t")(KafkaError(KafkaError._MSG_TIMED_OUT), None)  # type: ignore[arg-type]
    got, unnamed = watch.take()
    assert len(got) == 2 and unnamed == 3


def test_the_message_groups_by_topic_and_reason_in_one_line() -> None:
    many = [Undelivered(f"id-{i}", "jobs.a", "Local: Message timed out") for i in range(7)]
    big = Undelivered("id-big", "jobs.b", "Broker: Message size too large")
    text = str(DeliveryError([*many, big], others=2, note=" (brokers b:1)"))
    assert text == (
        "8 jobs not delivered (to jobs.a: Local: Message timed out: id-0, id-1, id-2, id-3, "
        "id-4 and 2 more; to jobs.b: Broker: Message size too large: id-big), and 2 other "
        "records not acknowledged (brokers b:1)"
    )
    assert str(DeliveryError([big])) == (
        "1 job not delivered (to jobs.b: Broker: Message size too large: id-big)"
    )
