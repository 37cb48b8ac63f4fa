"""Chaos scenarios: real worker processes, a real broker, injected faults, and the books.

JOBSTREAM_CHAOS_SCALE=short (default; part of `pytest tests`, each scenario well under a
minute) | medium | full (`make chaos`). The broker-restart and network-blip scenarios run a
dedicated broker owned by this session (own ports and data dir, behind a fault-injecting
proxy) so they never disturb the shared one."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.books import RECORDED, SCALE, SCALES, results_path
from tests.chaos.proxy import FlakyProxy
from tests.support.harness import Stack, free_port, make_stack


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: fault-injection scenario (tests/chaos)")
    if SCALE not in SCALES:
        raise pytest.UsageError(
            f"JOBSTREAM_CHAOS_SCALE={SCALE!r}: use one of {', '.join(SCALES)}"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/chaos/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.chaos)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RECORDED:
        return
    terminalreporter.section(f"chaos books ({SCALE}; written to {results_path()})")
    for books in RECORDED:
        terminalreporter.write_line(books.line())
        for v in books.violations:
            terminalreporter.write_line(f"    ! {v[:400]}")


@dataclass
class Dedicated:
    """A broker owned by this session, reachable only through `proxy` (it advertises the
    proxy's port, so clients keep going through it after bootstrapping)."""

    broker: Any  # consumers.broker.LocalBroker
    proxy: FlakyProxy
    bootstrap: str


@pytest.fixture(scope="session")
def dedicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dedicated]:
    from jobstream.config.settings import BrokerSettings
    from jobstream.consumers.broker import BrokerError, LocalBroker

    port, controller, proxy_port = free_port(), free_port(), free_port()
    data = Path(tmp_path_factory.mktemp("chaos-broker"))
    proxy = FlakyProxy(proxy_port, port, seed=11)
    proxy.start()
    broker = LocalBroker(
        BrokerSettings(port=port, controller_port=controller, data_dir=data),
        advertised_port=proxy_port,
    )
    try:
        broker.start()
    except BrokerError as e:
        proxy.stop()
        pytest.fail(f"cannot start the dedicated chaos broker: {e}", pytrace=False)
    try:
        yield Dedicated(broker, proxy, f"127.0.0.1:{proxy_port}")
    finally:
        broker.stop()
        proxy.stop()
        shutil.rmtree(data / "logs", ignore_errors=True)  # keep broker.log for post-mortems


@pytest.fixture
def dedicated_stack(
    dedicated: Dedicated, tmp_path: Path, unique: str
) -> Iterator[Callable[..., Stack]]:
    """Like stack_factory, on the dedicated broker."""
    made: list[Stack] = []

    def make(**kw: Any) -> Stack:
        s = make_stack(tmp_path, dedicated.bootstrap, unique + str(len(made)), **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop_all(timeout=30)
