"""Issue 26 item 18: `jobstream broker stop` stopped whatever process the data dir's pid file
named, so a missing or mistyped JOBSTREAM_BROKER__* stopped a broker someone else was using.
Now it stops only a broker that jobstream started from this data dir (its command line names
this data dir's server.properties) and that listens on the configured port, and it says which
one it stops; otherwise it stops nothing and says why.

The brokers here are stand-ins: small processes with a Kafka broker's command line (`...
kafka.Kafka <data dir>/server.properties`) listening on a port. What is under test is which
process `stop` is willing to signal; starting and stopping a real broker is covered by
tests/integration/test_foundation.py::test_broker_commands_start_report_stop."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobstream.config.settings import BrokerSettings
from jobstream.consumers.broker import BrokerError, LocalBroker
from tests.support.harness import free_port, run_cli

_LISTEN = (
    "import socket, sys, time\n"
    "s = socket.socket()\n"
    "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
    "s.listen()\n"
    "print('up', flush=True)\n"
    "time.sleep(120)\n"
)

StandIn = Callable[[Path, int], subprocess.Popen[bytes]]


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    """Start a fake broker of `props_dir` on `port` and record it in `props_dir`'s pid file."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(props_dir: Path, port: int, pid_dir: Path | None = None) -> subprocess.Popen[bytes]:
        props_dir.mkdir(parents=True, exist_ok=True)
        props = props_dir / "server.properties"
        props.write_text(f"listeners=PLAINTEXT://127.0.0.1:{port}\n")
        proc = subprocess.Popen(
            [sys.executable, "-c", _LISTEN, str(port), "kafka.Kafka", str(props)],
            stdout=subprocess.PIPE,
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        (pid_dir or props_dir).mkdir(parents=True, exist_ok=True)
        ((pid_dir or props_dir) / "broker.pid").write_text(str(proc.pid))
        return proc

    yield start  # type: ignore[misc]
    for proc in procs:
        proc.kill()
        proc.wait()


def _env(port: int, data_dir: Path) -> dict[str, str]:
    return {"JOBSTREAM_BROKER__PORT": str(port), "JOBSTREAM_BROKER__DATA_DIR": str(data_dir)}


def test_a_broker_on_another_port_is_not_stopped(tmp_path: Path, stand_in: StandIn) -> None:
    """The data dir is right but the port is not what the broker there listens on (e.g. a
    JOBSTREAM_BROKER__PORT meant for another shell): nothing is stopped."""
    data, theirs, ours = tmp_path / "kafka", free_port(), free_port()
    proc = stand_in(data, theirs)
    res = run_cli("broker", "stop", env=_env(ours, data))
    assert res.returncode == 1, res.stdout + res.stderr
    assert proc.poll() is None, "the other broker was stopped"
    assert str(proc.pid) in res.stderr and str(theirs) in res.stderr and str(ours) in res.stderr
    assert "JOBSTREAM_BROKER__PORT" in res.stderr


def test_a_kafka_started_from_another_data_dir_is_not_stopped(
    tmp_path: Path, stand_in: StandIn
) -> None:
    """The pid file names a Kafka broker that runs from another data dir (a stale pid reused,
    or a copied pid file): nothing is stopped."""
    port = free_port()
    data = tmp_path / "mine"
    proc = stand_in(tmp_path / "someone-elses", port, pid_dir=data)
    broker = LocalBroker(BrokerSettings(port=port, data_dir=data))
    with pytest.raises(BrokerError) as info:
        broker.stop()
    assert proc.poll() is None, "the other broker was stopped"
    assert str(tmp_path / "someone-elses") in str(info.value)


def test_the_broker_of_this_data_dir_and_port_is_stopped_and_named(
    tmp_path: Path, stand_in: StandIn
) -> None:
    data, port = tmp_path / "kafka", free_port()
    proc = stand_in(data, port)
    res = run_cli("broker", "stop", env=_env(port, data))
    assert res.returncode == 0, res.stderr
    assert proc.wait(timeout=30) is not None
    assert str(proc.pid) in res.stdout and f"127.0.0.1:{port}" in res.stdout
    assert str(data) in res.stdout
    assert not (data / "broker.pid").exists()
