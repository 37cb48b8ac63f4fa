"""`jobstream dlq replay` as a subprocess against the real broker: saved progress with filters,
interrupted runs (Ctrl-C, SIGTERM, double Ctrl-C), records too large for their topic, and
progress bars that count offsets."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from jobstream.config.kafka import client_config
from jobstream.producers.publisher import Publisher
from tests.integration.dlq_helpers import (
    JT,
    NOW_MS,
    World,
    audit_of,
    committed,
    dead_letter_headers,
    drop_world,
    make_world,
    ok,
    put_dead_letter,
    record_count,
    run,
)
from tests.support.harness import ROOT


@pytest.fixture
def world(bootstrap: str, tmp_path: Path) -> Iterator[World]:
    w = make_world(bootstrap, tmp_path)
    yield w
    drop_world(w)


def test_filtered_replay_keeps_its_own_progress(world: World) -> None:
    """Issue 26 item 4: `dlq replay --category decode` moved the saved progress past every
    record it skipped, so a later `--category permanent` replay found nothing (matched 0)
    although `dlq list` showed them. Progress is kept per filter set now."""
    with Publisher(world.settings) as pub:
        for i, category in enumerate(("decode", "permanent", "decode", "permanent", "permanent")):
            put_dead_letter(pub, world.dlq, 0, f"job-{i}", b"k", b"\x00", category=category)
    first = ok(world, "dlq", "replay", JT, "--category", "decode", "--yes")
    assert "matched 2, replayed 2, skipped 3" in first
    second = ok(world, "dlq", "replay", JT, "--category", "permanent", "--yes")
    assert "matched 3, replayed 3, skipped 2" in second
    # the same filters again resume after their own progress
    assert "matched 0" in ok(world, "dlq", "replay", JT, "--category", "permanent", "--yes")
    assert record_count(world, world.main) == 5
    assert "progress" in ok(world, "dlq", "replay", "--help").lower()
    assert "per filter" in " ".join(ok(world, "dlq", "replay", "--help").split())


def test_until_never_moves_progress_past_what_it_left_out(world: World) -> None:
    """Issue 26 item 4: records skipped for failing after --until are still to be replayed by
    a later run (an unfiltered one shares the progress of runs filtered by --until only), so
    progress stops before the first of them."""
    with Publisher(world.settings) as pub:
        for i, age_h in enumerate((3, 2, 0, 0)):
            put_dead_letter(pub, world.dlq, 1, f"job-{i}", b"k", b"\x00",
                            failed_at=NOW_MS - age_h * 3_600_000)
    assert "matched 2, replayed 2, skipped 2" in ok(world, "dlq", "replay", JT, "--until", "-1h",
                                                    "--yes")
    assert "matched 2, replayed 2, skipped 0" in ok(world, "dlq", "replay", JT, "--yes")
    assert "matched 0" in ok(world, "dlq", "replay", JT, "--yes")
    assert record_count(world, world.main) == 4


def test_record_too_large_for_the_topic_is_named_and_skipped(world: World) -> None:
    """Issue 26 item 15: one dead letter larger than the main topic accepts made every replay
    that reached it fail ("record ... is N bytes; the topic accepts at most M") without naming
    it. It is skipped now, named on stderr and in the audit record, counted in the summary;
    the rest is replayed and progress moves on."""
    admin = AdminClient(client_config(world.settings.kafka))
    res = ConfigResource(ConfigResource.Type.TOPIC, world.main, incremental_configs=[
        ConfigEntry("max.message.bytes", "100000",
                    incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(30)
    with Publisher(world.settings) as pub:
        put_dead_letter(pub, world.dlq, 0, "job-0", b"k", b"\x00")
        put_dead_letter(pub, world.dlq, 0, "job-big", b"k", b"\x01" * 150_000)
        put_dead_letter(pub, world.dlq, 0, "job-2", b"k", b"\x00")
        put_dead_letter(pub, world.dlq, 1, "job-3", b"k", b"\x00")
    p = run(world, "dlq", "replay", JT, "--yes")
    assert p.returncode == 0, p.stderr
    assert "matched 4, replayed 3, skipped 0, too large 1" in p.stdout, p.stdout
    line = next(x for x in p.stderr.splitlines() if "too large" in x)
    assert f"{world.dlq}:0:1" in line and "job-big" in line and "100000" in " ".join(
        p.stderr.split()), p.stderr
    assert record_count(world, world.main) == 3
    rec = audit_of(world, "replay")[-1]
    assert rec["counts"]["too_large"] == 1 and rec["too_large"] == [f"{world.dlq}:0:1"]
    assert "matched 0" in ok(world, "dlq", "replay", JT, "--yes")


def test_progress_bars_count_offsets_to_the_end(world: World, tmp_path: Path) -> None:
    """Issue 26 item 22 (last sentence): bars counted records against a total of offsets, so
    with transaction markers a finished replay ended at 4/8 and `export --limit 3` at 3/N.
    Bars count offsets, say so, and end full."""
    p = Producer(client_config(world.settings.kafka, **{"transactional.id": f"t-{world.dlq}"}))
    p.init_transactions(30)
    for i in range(4):  # one transaction each: offsets 0..7, every other one a marker
        p.begin_transaction()
        p.produce(world.dlq, b"\x00", b"k", partition=0,
                  headers=dead_letter_headers(0, f"job-{i}", topic=world.dlq))
        p.commit_transaction(30)
    ends_full = "8/8 offsets"
    replayed = run(world, "dlq", "replay", JT, "--yes")
    assert replayed.returncode == 0 and ends_full in replayed.stderr, replayed.stderr
    exported = run(world, "dlq", "export", JT, "--out", str(tmp_path / "x.jsonl"), "--limit", "3")
    assert exported.returncode == 0 and ends_full in exported.stderr, exported.stderr


# -- interrupted runs --------------------------------------------------------------------------

BIG = 1500


@pytest.fixture(scope="module")
def big(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Enough dead letters that a rate-limited replay is still running when signalled."""
    w = make_world(bootstrap, tmp_path_factory.mktemp("big"))
    with Publisher(w.settings) as pub:
        for i in range(BIG):
            put_dead_letter(pub, w.dlq, i % 3, f"job-{i}", f"k{i}".encode(), b"\x00")
    yield w
    drop_world(w)


class Replay:
    """`jobstream dlq replay` running in the background, its stderr collected line by line."""

    def __init__(self, w: World, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobstream", "dlq", "replay", w.job_type, "--yes", *args],
            env=w.env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_line(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in x for x in self.lines):
            assert time.monotonic() < deadline, f"no {needle!r} on stderr: {self.lines}"
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.lines}"
            time.sleep(0.01)

    def finish(self, timeout: float = 90) -> tuple[int, str, str]:
        rc = self.proc.wait(timeout)
        self.reader.join(10)
        assert self.proc.stdout is not None
        return rc, self.proc.stdout.read(), "".join(self.lines)


@pytest.mark.parametrize(("how", "code"), [("SIGINT", 130), ("SIGTERM", 143),
                                           ("double SIGINT", 130)])
def test_interrupted_replay_is_audited_with_true_counts(big: World, how: str, code: int) -> None:
    """Issue 26 item 5: after one Ctrl-C the audit record said `completed, replayed 298` while
    371 had been sent and progress stopped at 298; after SIGTERM or a double Ctrl-C there was
    no audit record at all. Every interrupted replay now waits for its sends, saves progress
    up to them, and writes an `interrupted` audit record with the true counts."""
    group = f"jobstream-replay.{big.dlq}.origin"
    before = record_count(big, big.main)
    assert before < BIG - 300, "the module's dead letters ran out"
    r = Replay(big, "--rate", "300")
    deadline = time.monotonic() + 60
    while record_count(big, big.main) < before + 30:
        assert time.monotonic() < deadline and r.proc.poll() is None, r.lines
        time.sleep(0.05)
    r.proc.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGINT)
    if how == "double SIGINT":
        r.wait_line("interrupted", 30)
        r.proc.send_signal(signal.SIGINT)
    rc, out, err = r.finish()
    assert rc == code, err + out
    assert "Traceback" not in err, err
    after = record_count(big, big.main)
    rec = audit_of(big, "replay")[-1]
    assert rec["status"] == "interrupted", rec
    assert rec["signal"] == ("SIGTERM" if how == "SIGTERM" else "SIGINT")
    assert rec["counts"]["replayed"] == rec["counts"]["matched"] == after - before > 0, rec
    # progress covers exactly what was sent (-1001: nothing saved for a partition yet)
    assert sum(max(o, 0) for o in committed(big, group).values()) == after
    assert f"replayed {after - before}" in out + err
    if how == "double SIGINT":
        assert "still finishing" in err, err


def test_replay_after_interruptions_sends_each_record_once(big: World) -> None:
    """Issue 26 item 5: after the interrupted runs above, a last run replays the rest and
    nothing twice (progress was saved up to what the interrupted runs had sent)."""
    ok(big, "dlq", "replay", big.job_type, "--yes")
    assert record_count(big, big.main) == BIG
