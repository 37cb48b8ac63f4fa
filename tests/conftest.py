"""Shared fixtures. Integration tests need a real Kafka broker, found in this order:
JOBSTREAM_TEST_BOOTSTRAP; testcontainers' Kafka when a Docker engine answers; else the local
broker of `jobstream broker` (started here if it is not running, stopped at the end only if
this session started it). No broker: the run fails loudly, it never skips."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    given = os.environ.get("JOBSTREAM_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    from jobstream.config.settings import load_settings
    from jobstream.consumers.broker import BrokerError, LocalBroker

    broker = LocalBroker(load_settings().broker)
    started = False
    if not broker.is_up():
        try:
            broker.start()
        except BrokerError as e:
            pytest.fail(f"no Kafka broker for integration tests: {e}", pytrace=False)
        started = True
    try:
        yield broker.bootstrap
    finally:
        if started:
            broker.stop()


@pytest.fixture
def unique() -> str:
    """A short unique suffix so tests never share topics or groups."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def env(bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing jobstream at the test broker (for in-process and subprocess use)."""
    monkeypatch.setenv("JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.delenv("JOBSTREAM_CONFIG", raising=False)
    return {**os.environ, "JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS": bootstrap}


@pytest.fixture
def stack_factory(tmp_path, bootstrap, unique):  # type: ignore[no-untyped-def]
    """make(job={...}, worker={...}) -> an isolated Stack; its workers are stopped at the end."""
    from tests.support.harness import make_stack

    made = []

    def make(**kw):  # type: ignore[no-untyped-def]
        s = make_stack(tmp_path, bootstrap, unique + str(len(made)), **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop_all(timeout=20)
        s.delete_topics()
