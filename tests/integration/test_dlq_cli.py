"""`jobstream dlq ...` and `jobstream audit list` against the real broker, run as a subprocess.

One module-scoped DLQ (3 partitions) holds four dead letters shaped like the worker's; the
replay test adds one more, so other tests never assert on the total count.
"""

from __future__ import annotations

import base64
import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobstream.consumers.ops import dlq, dlq_export, dlq_reader, interrupt, replay
from jobstream.producers.publisher import Publisher
from jobstream.schemas import wire
from jobstream.schemas.registry import SchemaRegistry
from tests.integration.dlq_helpers import (
    DEMO_SCHEMAS,
    JT,
    NOW_MS,
    World,
    audit_of,
    drop_world,
    jsonl,
    make_world,
    ok,
    put_dead_letter,
    run,
)


@pytest.fixture(scope="module")
def world(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(bootstrap, tmp_path_factory.mktemp("dlq"))
    reg = SchemaRegistry.from_dirs(DEMO_SCHEMAS)
    for jid, email in (("job-a", "alice@example.com"), ("job-b", "bob@example.com"),
                       ("job-c", "carol@example.com")):
        w.values[jid] = reg.encode(JT, {"order_id": f"o-{jid}", "email": email,
                                        "total_cents": 100, "currency": "EUR",
                                        "locale": None})[1]
    with Publisher(w.settings) as pub:
        put_dead_letter(pub, w.dlq, 0, "job-a", b"k-a", w.values["job-a"],
                     failed_at=NOW_MS - 2 * 3_600_000)
        put_dead_letter(pub, w.dlq, 1, "job-b", b"k-b", w.values["job-b"],
                     error_class="myapp.EmailBounced", category="permanent", attempt=1)
        put_dead_letter(pub, w.dlq, 1, "job-c", b"k-c", w.values["job-c"], category="timeout")
        put_dead_letter(pub, w.dlq, 2, None, None, b"\xff\xfegarbage",
                     error_class="DecodeError", category="decode", bare=True)
    yield w
    drop_world(w)


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
            put_dead_letter(pub, world.dlq, 0, "job-late", b"k-late", world.values["job-a"],
                         error_class="LateError")

    refused = run(world, "dlq", "replay", JT)  # no tty, no --yes
    assert refused.returncode == 1 and "--yes" in refused.stderr

    first = replay.replay(s, JT, confirm=die_again_during_replay)
    assert (first.matched, first.replayed, first.skipped) == (4, 4, 0)
    replayed = {d.headers.get(wire.REPLAYED_FROM): d for d in dlq_reader.scan(s, world.main)}
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
    assert len(list(dlq_reader.scan(s, world.main))) == 5

    audit = [r for r in jsonl(ok(world, "audit", "list", "--json", "--limit", "200"))
             if r.get("target") == world.dlq and r.get("command") == "replay"]
    assert [r["dry_run"] for r in audit] == [False, False, False, True]
    assert audit[0]["counts"] == {"matched": 4, "replayed": 4, "skipped": 0, "too_large": 0}
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


# -- issue 26 ----------------------------------------------------------------------------------

KITCHEN = "test.kitchen"
PERSON = {"type": "record", "name": "Person", "fields": [
    {"name": "email", "type": "string", "pii": True}, {"name": "city", "type": "string"}]}
KITCHEN_SCHEMA = {"type": "record", "name": "Kitchen", "namespace": "t.k", "fields": [
    {"name": "order_id", "type": "string"},
    {"name": "contacts", "type": {"type": "map", "values": PERSON}},
    {"name": "history", "type": {"type": "array", "items": ["null", "Person"]}},
    {"name": "photo", "type": "bytes"},
]}
KITCHEN_PAYLOAD = {"order_id": "o-1", "contacts": {"home": {"email": "eve@example.com",
                                                            "city": "Oslo"}},
                   "history": [None, {"email": "mallory@example.com", "city": "Rome"}],
                   "photo": b"\x89PNG\x00\xff"}


@pytest.fixture(scope="module")
def kitchen(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A job type whose PII sits inside a map and a union in an array, with a bytes field."""
    tmp = tmp_path_factory.mktemp("kitchen")
    (tmp / "schemas" / KITCHEN).mkdir(parents=True)
    (tmp / "schemas" / KITCHEN / "v1.avsc").write_text(json.dumps(KITCHEN_SCHEMA))
    w = make_world(bootstrap, tmp, job_type=KITCHEN, schema_dirs=[str(tmp / "schemas")])
    value = SchemaRegistry.from_dirs([tmp / "schemas"]).encode(KITCHEN, KITCHEN_PAYLOAD)[1]
    with Publisher(w.settings) as pub:
        for i in range(3):
            put_dead_letter(pub, w.dlq, 0, f"kitchen-{i}", b"k", value, job_type=KITCHEN,
                            version=1)
    yield w
    drop_world(w)


def test_show_and_export_mask_pii_inside_maps_and_unions(kitchen: World, tmp_path: Path) -> None:
    """Issue 26 item 9: PII in map values and in union branches inside arrays was printed in
    clear under "(PII masked)" by `dlq show` and written by `dlq export`."""
    shown = ok(kitchen, "dlq", "show", KITCHEN, "0:0")
    assert "(PII masked)" in shown and '"city": "Oslo"' in shown
    assert "eve@example.com" not in shown and "mallory@example.com" not in shown
    out = tmp_path / "k.jsonl"
    ok(kitchen, "dlq", "export", KITCHEN, "--out", str(out))
    text = out.read_text()
    assert "eve@example.com" not in text and "mallory@example.com" not in text
    row = jsonl(text)[0]
    assert row["payload"]["contacts"] == {"home": {"email": "***", "city": "Oslo"}}
    assert row["payload"]["history"] == [None, {"email": "***", "city": "Rome"}]


def test_export_writes_bytes_as_base64_and_never_a_partial_file(
        kitchen: World, tmp_path: Path) -> None:
    """Issue 26 item 14: a bytes field made `dlq export` fail with a TypeError, leaving a
    partial file and no audit record. Bytes are written as base64 now; the file appears
    whole (temporary file, renamed at the end) or not at all, and a failed export is
    audited."""
    out = tmp_path / "k.jsonl"
    done = run(kitchen, "dlq", "export", KITCHEN, "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = jsonl(out.read_text())
    assert len(rows) == 3
    assert base64.b64decode(rows[0]["payload"]["photo"]) == KITCHEN_PAYLOAD["photo"]
    assert "base64" in ok(kitchen, "dlq", "export", "--help")

    out.write_text("the previous export\n")
    seen = []

    def fail_midway(n: int, _total: int) -> None:
        seen.append(n)
        if n == 2:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        dlq_export.export(kitchen.settings, KITCHEN, dlq.Filters(), out, progress=fail_midway)
    assert seen and out.read_text() == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.jsonl"]  # no temporary file left
    last = audit_of(kitchen, "export")[-1]
    assert last["status"] == "failed" and "disk on fire" in last["error"]


def test_show_unmask_is_audited(world: World) -> None:
    """Issue 26 item 11: `dlq show --unmask` printed PII in clear and left no audit record
    (export --unmask does). It is audited now, before anything is printed."""
    before = len(audit_of(world, "show"))
    ok(world, "dlq", "show", JT, "1:0")  # masked: nothing to audit
    assert len(audit_of(world, "show")) == before
    assert "bob@example.com" in ok(world, "dlq", "show", JT, "1:0", "--unmask")
    rec = audit_of(world, "show")[-1]
    assert (rec["status"], rec["unmask"], rec["job_id"]) == ("completed", True, "job-b")
    assert rec["offsets"] == {"1": {"first": 0, "last": 0}} and rec["user"]
    assert "show" in ok(world, "audit", "list", "--limit", "500")


@pytest.fixture
def spread(bootstrap: str, tmp_path: Path) -> Iterator[World]:
    """Six dead letters whose failure times interleave the partitions: the oldest two sit in
    partition 2, the newest two in partition 0; job ids are 36 characters long."""
    w = make_world(bootstrap, tmp_path)
    minutes = {2: (60, 50), 1: (40, 30), 0: (20, 10)}
    with Publisher(w.settings) as pub:
        for p, ages in minutes.items():
            for age in ages:
                jid = f"job-{uuid.UUID(int=age).hex}"
                put_dead_letter(pub, w.dlq, p, jid, b"k", b"\x00", failed_at=NOW_MS - age * 60_000,
                                error_class="OldError" if age >= 50 else "builtins.ValueError")
    yield w
    drop_world(w)


def test_list_limit_orders_by_failure_time_and_counts_all(spread: World) -> None:
    """Issue 26 item 24: `dlq list --limit N` showed whichever partition was fetched first and
    counted only what it showed, and tables cut job ids at 80 columns or in a pipe. Now the
    oldest N across partitions are shown, all matching are counted, ids stay whole."""
    rows = jsonl(ok(spread, "dlq", "list", JT, "--limit", "3", "--json"))
    assert [r["job_id"] for r in rows] == [f"job-{uuid.UUID(int=a).hex}" for a in (60, 50, 40)]
    assert [(r["partition"], r["offset"]) for r in rows] == [(2, 0), (2, 1), (1, 0)]
    narrow = run(spread, "dlq", "list", JT, "--limit", "3",
                 env={**spread.env, "COLUMNS": "80"})
    assert narrow.returncode == 0, narrow.stderr
    for age in (60, 50, 40):
        assert f"job-{uuid.UUID(int=age).hex}" in narrow.stdout, narrow.stdout
    assert "showing the oldest 3 of 6" in narrow.stdout, narrow.stdout
    assert "builtins.ValueError 4, OldError 2" in narrow.stdout  # counted over all 6


def test_interrupted_export_is_audited_and_writes_nothing(kitchen: World, tmp_path: Path) -> None:
    """Issue 26 item 5: an export stopped by a signal left no audit record. It is audited as
    `interrupted` (with the signal and what it had read), and the file is not written."""
    out = tmp_path / "k.jsonl"

    def signalled(n: int, _total: int) -> None:
        if n == 2:
            raise interrupt.Interrupted(signal.SIGTERM)

    with pytest.raises(interrupt.Interrupted):
        dlq_export.export(kitchen.settings, KITCHEN, dlq.Filters(), out, progress=signalled)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    last = audit_of(kitchen, "export")[-1]
    assert (last["status"], last["signal"]) == ("interrupted", "SIGTERM")
    assert last["counts"] == {"matched": 1, "exported": 0}
