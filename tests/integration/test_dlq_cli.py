"""`jobstream dlq ...` and `jobstream audit list` against the real broker, run as a subprocess.

One module-scoped DLQ (3 partitions) holds four dead letters shaped like the worker's; the
replay test adds one more, so other tests never assert on the total count.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from config.settings import Settings, load_settings
from consumers import dlq, replay
from consumers.topics import apply, full_plan
from producers.publisher import Publisher
from schemas import wire
from schemas.registry import SchemaRegistry

JT = "orders.confirmation"
SCHEMAS = [str(Path(__file__).resolve().parents[2] / "examples" / "schemas")]
NOW_MS = int(time.time() * 1000)


@dataclass
class World:
    settings: Settings
    main: str
    dlq: str
    env: dict[str, str]
    values: dict[str, bytes]  # job id -> value bytes


def _dead_letter(pub: Publisher, topic: str, partition: int, job_id: str | None, key: bytes | None,
                 value: bytes, *, error_class: str = "builtins.ValueError",
                 category: str = "transient", failed_at: int = NOW_MS, attempt: int = 4,
                 bare: bool = False) -> None:
    h: dict[str, str | int] = {wire.ERROR_CATEGORY: category, wire.ERROR_CLASS: error_class,
                               wire.ERROR_MESSAGE: f"{error_class} happened [x]",
                               wire.FAILED_AT: failed_at}
    if not bare:
        h.update({
            wire.JOB_TYPE: JT, wire.SCHEMA_VERSION: 2, wire.JOB_ID: job_id or "",
            wire.ATTEMPT: attempt,
            wire.ENQUEUED_AT: failed_at - 60_000, wire.TRACEPARENT: f"00-{'a' * 32}-{'b' * 16}-01",
            wire.PRODUCER: "test@host:1", wire.PARENT_JOB_ID: "parent-1",
            wire.ERROR_STACK: 'Traceback (most recent call last):\n  File "jobs.py", line 3\n',
            wire.ORIGIN_TOPIC: f"{topic[:-4]}.retry.10m", wire.ORIGIN_PARTITION: partition,
            wire.ORIGIN_OFFSET: 7, wire.FIRST_FAILED_AT: failed_at - 30_000, wire.WORKER: "w-1",
        })
    pub.send(topic, key, value, wire.encode_headers(h), partition=partition)


@pytest.fixture(scope="module")
def world(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    u = uuid.uuid4().hex[:8]
    main = f"jobs.t{u}"
    jobs = {JT: {"topic": main, "partitions": 3}}
    s = load_settings(kafka={"bootstrap_servers": bootstrap}, jobs=jobs, schema_dirs=SCHEMAS)
    apply(s, full_plan(s, [JT]))
    cfg = tmp_path_factory.mktemp("dlq") / "jobstream.yaml"
    cfg.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": bootstrap}, "jobs": jobs,
                                   "schema_dirs": SCHEMAS}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSTREAM_")}
    env.update(JOBSTREAM_CONFIG=str(cfg), COLUMNS="250", NO_COLOR="1")
    reg = SchemaRegistry.from_dirs(SCHEMAS)
    values = {}
    for jid, email in (("job-a", "alice@example.com"), ("job-b", "bob@example.com"),
                       ("job-c", "carol@example.com")):
        values[jid] = reg.encode(JT, {"order_id": f"o-{jid}", "email": email, "total_cents": 100,
                                      "currency": "EUR", "locale": None})[1]
    with Publisher(s) as pub:
        _dead_letter(pub, main + ".dlq", 0, "job-a", b"k-a", values["job-a"],
                     failed_at=NOW_MS - 2 * 3_600_000)
        _dead_letter(pub, main + ".dlq", 1, "job-b", b"k-b", values["job-b"],
                     error_class="myapp.EmailBounced", category="permanent", attempt=1)
        _dead_letter(pub, main + ".dlq", 1, "job-c", b"k-c", values["job-c"], category="timeout")
        _dead_letter(pub, main + ".dlq", 2, None, None, b"\xff\xfegarbage",
                     error_class="DecodeError", category="decode", bare=True)
    yield World(s, main, main + ".dlq", env, values)


def run(w: World, *args: str, env: dict[str, str] | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consumers.cli", *args], env=env or w.env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def ok(w: World, *args: str) -> str:
    p = run(w, *args)
    assert p.returncode == 0, p.stderr + p.stdout
    return p.stdout


def jsonl(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_list_table_json_and_filters(world: World) -> None:
    table = ok(world, "dlq", "list", JT)
    for needle in ("0:0", "1:1", "2:0", "job-a", "myapp.EmailBounced", "DecodeError",
                   "by error class", "builtins.ValueError 2", "[x]"):
        assert needle in table, table
    rows = jsonl(ok(world, "dlq", "list", world.dlq, "--json"))
    by_pos = {(r["partition"], r["offset"]): r for r in rows}
    assert by_pos[(1, 0)]["job_id"] == "job-b" and by_pos[(1, 0)]["category"] == "permanent"
    assert by_pos[(2, 0)]["job_id"] is None and by_pos[(0, 0)]["attempt"] == 4
    picked = jsonl(ok(world, "dlq", "list", JT, "--json", "--error-class", "ValueError",
                      "--since", "-1h"))
    assert [r["job_id"] for r in picked] == ["job-c"]
    # time window: job-a failed 2 h ago, the others now
    old = jsonl(ok(world, "dlq", "list", JT, "--json", "--until", "-1h"))
    assert [r["job_id"] for r in old] == ["job-a"]
    recent = jsonl(ok(world, "dlq", "list", JT, "--json", "--since", "-1h"))
    assert sorted(str(r["job_id"]) for r in recent) == ["None", "job-b", "job-c"]
    by_key = jsonl(ok(world, "dlq", "list", JT, "--json", "--key", "k-b"))
    assert [r["job_id"] for r in by_key] == ["job-b"]
    by_category = jsonl(ok(world, "dlq", "list", JT, "--json", "--category", "decode"))
    assert [(r["partition"], r["offset"]) for r in by_category] == [(2, 0)]


def test_show_masked_unmasked_and_undecodable(world: World) -> None:
    masked = ok(world, "dlq", "show", JT, "1:0")
    assert "***" in masked and "bob@example.com" not in masked
    assert "js-origin-topic" in masked and "Traceback (most recent call last)" in masked
    assert "bob@example.com" in ok(world, "dlq", "show", world.dlq, "1:0", "--unmask")
    garbage = ok(world, "dlq", "show", JT, "2:0")
    assert "<undecodable:" in garbage and "ff fe 67 61" in garbage
    missing = run(world, "dlq", "show", JT, "1:99")
    assert missing.returncode == 1 and "no record at" in missing.stderr and "0..1" in missing.stderr
    bad = run(world, "dlq", "show", JT, "3-1042")
    assert bad.returncode == 1 and "expected PARTITION:OFFSET, e.g. 3:1042" in bad.stderr


def test_replay_resumable_and_bounded(world: World) -> None:
    s = world.settings

    def die_again_during_replay(plan: replay.ReplayPlan) -> None:
        # Written after the end offsets were taken: must not be replayed by this run.
        with Publisher(s) as pub:
            _dead_letter(pub, world.dlq, 0, "job-late", b"k-late", world.values["job-a"],
                         error_class="LateError")

    refused = run(world, "dlq", "replay", JT)  # no tty, no --yes
    assert refused.returncode == 1 and "--yes" in refused.stderr

    first = replay.replay(s, JT, confirm=die_again_during_replay)
    assert (first.matched, first.replayed, first.skipped) == (4, 4, 0)
    replayed = {d.headers.get(wire.REPLAYED_FROM): d for d in dlq.scan(s, world.main)}
    assert len(replayed) == 4
    b = replayed[f"{world.dlq}:1:0"]
    assert (b.partition, b.key, b.job_id, b.attempt, b.value) == (
        1, b"k-b", "job-b", 1, world.values["job-b"])
    assert b.headers[wire.PARENT_JOB_ID] == "parent-1" and wire.ERROR_CLASS not in b.headers
    assert b.headers[wire.TRACEPARENT].startswith("00-aaaa")
    assert replayed[f"{world.dlq}:2:0"].partition == 2  # garbage replays byte for byte

    second = ok(world, "dlq", "replay", JT, "--yes")
    assert "matched 1, replayed 1, skipped 0" in second  # only the late one
    assert "matched 0, replayed 0" in ok(world, "dlq", "replay", JT, "--yes")
    dry = ok(world, "dlq", "replay", JT, "--dry-run", "--from-start", "--error-class",
             "ValueError")
    assert "matched 2, would replay 2, skipped 3" in dry
    assert len(list(dlq.scan(s, world.main))) == 5

    audit = [r for r in jsonl(ok(world, "audit", "list", "--json", "--limit", "200"))
             if r.get("target") == world.dlq and r.get("command") == "replay"]
    assert [r["dry_run"] for r in audit] == [False, False, False, True]
    assert audit[0]["counts"] == {"matched": 4, "replayed": 4, "skipped": 0}
    assert audit[0]["offsets"] == {"0": {"first": 0, "last": 0}, "1": {"first": 0, "last": 1},
                                   "2": {"first": 0, "last": 0}}
    assert audit[3]["filters"] == {"error_class": "ValueError"} and audit[0]["user"]


def test_export_masked_and_audited(world: World, tmp_path: Path) -> None:
    out = tmp_path / "dead.jsonl"
    done = ok(world, "dlq", "export", JT, "--out", str(out), "--category", "permanent")
    assert "exported 1 dead letter(s)" in done
    (row,) = jsonl(out.read_text())
    assert row["payload"]["email"] == "***"  # type: ignore[index]
    assert row["headers"][wire.JOB_ID] == "job-b"  # type: ignore[index]
    assert base64.b64decode(str(row["value_b64"])) == world.values["job-b"]
    ok(world, "dlq", "export", world.dlq, "--out", str(out), "--category", "decode")
    (garbage,) = jsonl(out.read_text())
    assert str(garbage["payload"]).startswith("<undecodable:")
    table = ok(world, "audit", "list", "--limit", "200")
    assert "export" in table and world.dlq in table and "category=permanent" in table


def test_errors_are_one_clear_line(world: World) -> None:
    unknown = run(world, "dlq", "list", f"{world.main}.nope.dlq")
    assert unknown.returncode == 1
    assert f"topic {world.main}.nope.dlq does not exist" in unknown.stderr
    not_dlq = run(world, "dlq", "list", world.main)
    assert not_dlq.returncode == 1 and f"did you mean {world.dlq}?" in not_dlq.stderr
    env = {**world.env, "JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    started = time.monotonic()
    down = run(world, "dlq", "list", JT, env=env, timeout=20)
    assert time.monotonic() - started < 15
    assert down.returncode != 0 and "127.0.0.1:1" in down.stderr
    for p in (unknown, not_dlq, down):
        assert "Traceback" not in p.stderr and p.stderr.startswith("error: ")
