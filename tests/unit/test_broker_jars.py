"""Brokers started at once on a fresh machine (the helpers of a session, or parallel CI jobs,
each running `jobstream broker start`) all fetched the Kafka jars into one `libs.partial`
folder: one wiped it while another filled it, and the loser's rename failed with "Directory
not empty", so its broker did not start. Now each fetch has its own folder, the first rename
wins, and the others use its jars. The Maven here is a stand-in that writes a jar slowly."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from jobstream.config.settings import BrokerSettings
from jobstream.consumers.broker import LocalBroker

FAKE_MVN = """#!/bin/sh
for a in "$@"; do case "$a" in -DoutputDirectory=*) out="${a#-DoutputDirectory=}";; esac; done
mkdir -p "$out"
sleep 0.5
echo jar > "$out/kafka_2.13-4.1.1.jar"
"""


def test_concurrent_fetches_all_succeed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text(FAKE_MVN)
    mvn.chmod(mvn.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    settings = BrokerSettings(cache_dir=tmp_path / "jars", data_dir=tmp_path / "data")
    results: list[object] = []

    def fetch() -> None:
        try:
            results.append(LocalBroker(settings).ensure_jars())
        except Exception as e:
            results.append(e)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    jar_dir = LocalBroker(settings).jar_dir
    assert results == [jar_dir] * 4, results
    assert (jar_dir / "kafka_2.13-4.1.1.jar").read_text() == "jar\n"
    assert sorted(p.name for p in jar_dir.parent.iterdir()) == ["libs"]  # no leftovers
