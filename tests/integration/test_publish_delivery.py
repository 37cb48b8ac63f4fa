"""Delivery failures of `publish_async` against real brokers: one that refuses the records, and
one of this module's own that goes down (the shared test broker is never stopped)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobstream.config.settings import BrokerSettings
from jobstream.consumers.broker import LocalBroker
from jobstream.producers import DeliveryError, Publisher
from jobstream.schemas import wire
from tests.support.harness import Stack, free_port, make_stack, set_max_message_bytes

BIG = {"seq": 2, "secret": "x" * 20_000}


def _warm(stack: Stack, **producer_config: object) -> Publisher:
    """A publisher that has published once, so it knows the topic's size limit (later sends
    are checked against that, not asked again) and has a connection to the broker."""
    pub = Publisher(stack.settings, producer_config=producer_config or None)
    pub.publish(stack.job_type, {"seq": 0}, key="warm")
    return pub


def test_records_the_broker_refuses_are_named_by_flush_and_exit(stack_factory, bootstrap) -> None:
    """Issue 26 item 2: the broker refused a record from publish_async (here: larger than the
    topic's max.message.bytes, lowered after the publisher had read it) and `flush()` returned
    0, the `with` block exited cleanly: the job was lost and nobody heard of it. Now flush()
    raises DeliveryError naming the job id and the broker's reason (once), and leaving the
    `with` block raises when a job was not delivered."""
    stack: Stack = stack_factory()
    pub, other = _warm(stack), _warm(stack)
    set_max_message_bytes(bootstrap, stack.topics.main, "4000")
    good = pub.publish_async(stack.job_type, {"seq": 1}, key="a")
    assert pub.flush(30) == 0  # a small job still goes through
    lost = pub.publish_async(stack.job_type, BIG, key="b")
    with pytest.raises(DeliveryError) as e:
        pub.flush(30)
    assert [(u.job_id, u.topic) for u in e.value.undelivered] == [(lost, stack.topics.main)]
    assert lost in str(e.value) and "too large" in str(e.value), str(e.value)
    assert "\n" not in str(e.value)
    assert pub.flush(5) == 0, "a failure is reported once"

    with pytest.raises(DeliveryError) as e, pub:
        lost_in_with = pub.publish_async(stack.job_type, BIG, key="c")
    assert [u.job_id for u in e.value.undelivered] == [lost_in_with]

    # An error inside the block is not replaced; the lost job is named in a note on it.
    with pytest.raises(KeyError) as k, other:
        lost_too = other.publish_async(stack.job_type, BIG, key="d")
        raise KeyError("the caller's own error")
    assert any(lost_too in n for n in getattr(k.value, "__notes__", [])), k.value

    main = stack.read_topic(stack.topics.main)
    delivered = {dict(m.headers())[wire.JOB_ID].decode() for m in main}
    assert good in delivered and not {lost, lost_in_with, lost_too} & delivered


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker only this module uses, so a test can stop it."""
    data = Path(tmp_path_factory.mktemp("own-broker"))
    broker = LocalBroker(
        BrokerSettings(port=free_port(), controller_port=free_port(), data_dir=data, heap="512m")
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_jobs_lost_to_a_broker_outage_are_named(own_broker: LocalBroker, tmp_path: Path) -> None:
    """Issue 26 item 2: with the broker down longer than message.timeout.ms, librdkafka gave up
    on the queued jobs of publish_async and `flush()` returned 0 as if all were delivered. Now
    flush() raises DeliveryError naming each job id and "timed out"; and close() (what the
    `with` block calls) with jobs still queued at its timeout names them as not acknowledged
    instead of leaving them in a producer nobody serves."""
    stack = make_stack(tmp_path, own_broker.bootstrap, "down")
    pub = _warm(stack, **{"message.timeout.ms": 3000})
    patient = _warm(stack)  # librdkafka's default message.timeout.ms: 5 minutes
    own_broker.stop()
    lost = [pub.publish_async(stack.job_type, {"seq": i}, key=f"k{i}") for i in range(3)]
    queued = patient.publish_async(stack.job_type, {"seq": 9})
    started = time.monotonic()
    with pytest.raises(DeliveryError) as e:
        pub.flush(60)
    assert time.monotonic() - started < 45, "gave up at message.timeout.ms, not flush's timeout"
    assert sorted(u.job_id for u in e.value.undelivered) == sorted(lost)
    assert all("timed out" in u.reason for u in e.value.undelivered), e.value.undelivered
    assert all(jid in str(e.value) for jid in lost)

    with pytest.raises(DeliveryError) as e:
        patient.close(timeout=2)
    assert [u.job_id for u in e.value.undelivered] == [queued]
    assert "not acknowledged within 2s" in str(e.value), str(e.value)
