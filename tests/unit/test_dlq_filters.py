"""Pure parts of the dead-letter tools: filters, time and offset parsing, replay headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobstream.consumers.ops.dlq import DeadLetter, DlqError, Filters, parse_position, parse_time
from jobstream.consumers.ops.replay import replay_headers
from jobstream.schemas import wire
from jobstream.schemas.registry import SchemaRegistry

EXAMPLE_SCHEMAS = Path(__file__).resolve().parents[2] / "examples" / "schemas"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def dead_letter(**over: str | int) -> DeadLetter:
    h: dict[str, str | int] = {
        wire.JOB_TYPE: "orders.confirmation", wire.SCHEMA_VERSION: 1, wire.JOB_ID: "j-1",
        wire.ATTEMPT: 4, wire.ENQUEUED_AT: NOW_MS - 60_000, wire.TRACEPARENT: "00-ab-cd-01",
        wire.PARENT_JOB_ID: "p-1", wire.PRODUCER: "svc@host:1",
        wire.ERROR_CATEGORY: "transient", wire.ERROR_CLASS: "myapp.jobs.EmailBounced",
        wire.ERROR_MESSAGE: "bounced", wire.ERROR_STACK: "Traceback ...",
        wire.ORIGIN_TOPIC: "jobs.x.retry.10m", wire.ORIGIN_PARTITION: 2, wire.ORIGIN_OFFSET: 7,
        wire.FIRST_FAILED_AT: NOW_MS - 50_000, wire.FAILED_AT: NOW_MS, wire.WORKER: "w-1",
    }
    h.update(over)
    raw = wire.encode_headers(h)
    return DeadLetter.build("jobs.x.dlq", 2, 41, NOW_MS + 5, b"k-1", b"\x00", raw)


def test_record_fields_come_from_the_header_table() -> None:
    dl = dead_letter()
    assert (dl.job_id, dl.attempt, dl.category, dl.failed_at) == ("j-1", 4, "transient", NOW_MS)
    assert (dl.origin_topic, dl.origin_partition, dl.origin_offset) == ("jobs.x.retry.10m", 2, 7)
    assert dl.ref == "jobs.x.dlq:2:41" and dl.position == "2:41" and dl.key_text == "k-1"


def test_headerless_garbage_record_is_shown_not_raised() -> None:
    dl = DeadLetter.build("t.dlq", 0, 0, NOW_MS, None, b"\xff\xfe" * 50, None)
    reg = SchemaRegistry.from_dirs([EXAMPLE_SCHEMAS])
    assert dl.job_id is None and dl.when_ms == NOW_MS
    assert str(dl.payload(reg)).startswith("<undecodable: no js-job-type")
    assert dl.hex_preview().startswith("ff fe ff") and "(100 bytes)" in dl.hex_preview()
    bad = dead_letter(**{wire.SCHEMA_VERSION: "x"})
    assert "schema-version" in str(bad.payload(reg))
    garbage = dead_letter()  # value b"\x00" is not an OrderConfirmation
    assert str(garbage.payload(reg)).startswith("<undecodable: cannot decode")


def test_payload_is_masked_unless_unmasked() -> None:
    reg = SchemaRegistry.from_dirs([EXAMPLE_SCHEMAS])
    version, value = reg.encode("orders.confirmation",
                                {"order_id": "o-1", "email": "a@b.c", "total_cents": 5,
                                 "currency": "EUR", "locale": None})
    dl = DeadLetter.build("t.dlq", 0, 0, None, None, value, wire.encode_headers(
        {wire.JOB_TYPE: "orders.confirmation", wire.SCHEMA_VERSION: version}))
    assert dl.payload(reg)["email"] == "***"  # type: ignore[index]
    assert dl.payload(reg, unmask=True)["email"] == "a@b.c"  # type: ignore[index]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters(), True),
        (Filters(error_class="EmailBounced"), True),
        (Filters(error_class="myapp.jobs.EmailBounced"), True),
        (Filters(error_class="Bounced"), False),
        (Filters(category="transient"), True),
        (Filters(category="permanent"), False),
        (Filters(key="k-1"), True),
        (Filters(key="k-2"), False),
        (Filters(job_id="j-1"), True),
        (Filters(job_id="j-2"), False),
        (Filters(since=NOW), True),  # since is inclusive
        (Filters(since=NOW_MS + 1), False),
        (Filters(until=NOW), False),  # until is exclusive
        (Filters(until=NOW + timedelta(milliseconds=1)), True),
        (Filters(since=NOW - timedelta(hours=1), until=NOW_MS + 1, category="transient"), True),
    ],
)
def test_filters(filters: Filters, expected: bool) -> None:
    assert filters.matches(dead_letter()) is expected


def test_time_filter_falls_back_to_record_timestamp() -> None:
    dl = DeadLetter.build("t.dlq", 0, 0, NOW_MS, None, b"", [])
    assert Filters(since=NOW).matches(dl)
    assert not Filters(since=NOW_MS + 1).matches(dl)
    assert not Filters(since=NOW).matches(DeadLetter.build("t.dlq", 0, 0, None, None, b"", []))


def test_filter_validation() -> None:
    with pytest.raises(DlqError, match="unknown category 'boom'"):
        Filters(category="boom")
    with pytest.raises(DlqError, match="limit"):
        Filters(limit=0)
    assert Filters(since=NOW, category="decode").describe() == {
        "since": "2024-05-01T12:00:00.000+00:00", "category": "decode"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-1h", NOW - timedelta(hours=1)),
        ("30m", NOW - timedelta(minutes=30)),
        ("- 2d", NOW - timedelta(days=2)),
        ("500ms", NOW - timedelta(milliseconds=500)),
        ("now", NOW),
        ("2024-04-30T10:00:00Z", datetime(2024, 4, 30, 10, tzinfo=UTC)),
        ("2024-04-30T12:00:00+02:00", datetime(2024, 4, 30, 10, tzinfo=UTC)),
        ("2024-04-30 10:00", datetime(2024, 4, 30, 10, tzinfo=UTC)),  # naive means UTC
        ("2024-04-30", datetime(2024, 4, 30, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "1x", "-h", "2024-13-01", "1h30m"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(DlqError, match=r"invalid time .*ISO 8601"):
        parse_time(text, NOW)


def test_parse_position() -> None:
    assert parse_position("3:1042") == (3, 1042)
    assert parse_position(" 0 : 0 ") == (0, 0)
    for bad in ("3", "3:", ":1", "a:b", "-1:5", "3:1:2", "3.0:1"):
        with pytest.raises(DlqError, match=r"expected PARTITION:OFFSET, e\.g\. 3:1042"):
            parse_position(bad)


def test_replay_headers_reset_attempt_and_drop_failure_headers() -> None:
    extra: dict[str, str | int] = {wire.NOT_BEFORE: NOW_MS, wire.REPLAYED_FROM: "old:0:0"}
    dl = dead_letter(**extra)
    out = dict(replay_headers(dl.raw_headers, dl.ref))
    assert out[wire.ATTEMPT] == b"1"
    assert out[wire.REPLAYED_FROM] == b"jobs.x.dlq:2:41"
    for name in (*wire.FAILURE_HEADERS, wire.NOT_BEFORE):
        assert name not in out
    for name in (wire.JOB_TYPE, wire.SCHEMA_VERSION, wire.JOB_ID, wire.TRACEPARENT,
                 wire.ENQUEUED_AT, wire.PARENT_JOB_ID, wire.PRODUCER):
        assert out[name] == dict(dl.raw_headers)[name]
    assert len(replay_headers(dl.raw_headers, dl.ref)) == len(out)  # no duplicate names


def test_replay_headers_keep_raw_bytes_and_set_not_before_for_tiers() -> None:
    raw = [(wire.JOB_ID, b"\xff\x00odd"), (wire.ATTEMPT, b"9"), (wire.ERROR_CLASS, b"X")]
    out = replay_headers(raw, "t.dlq:0:1", not_before_ms=123)
    assert out == [(wire.JOB_ID, b"\xff\x00odd"), (wire.ATTEMPT, b"1"),
                   (wire.REPLAYED_FROM, b"t.dlq:0:1"), (wire.NOT_BEFORE, b"123")]


def test_list_table_keeps_ids_whole_in_a_narrow_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 26 item 24: at 80 columns the list table cut job ids ("job-0123…"). In a narrow
    terminal it now leaves out the least needed columns and wraps the others, while
    positions and job ids stay whole."""
    from collections import Counter
    from io import StringIO

    from rich.console import Console

    from jobstream.consumers.cli import dlq as dlq_cli
    from jobstream.consumers.ops.dlq_reader import Selection

    buf = StringIO()
    monkeypatch.setattr(dlq_cli, "out", Console(file=buf, force_terminal=True, width=80,
                                                color_system=None))
    ids = [f"job-{i:032x}" for i in range(3)]
    rows = [dead_letter(**{wire.JOB_ID: i}) for i in ids]
    dlq_cli.print_list("jobs.x.dlq", Selection(rows, 7, Counter({"EmailBounced": 7})), 3)
    text = buf.getvalue()
    for i in ids:
        assert i in text, text
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert "2:41" in text and max(len(line) for line in table) <= 80
    assert "showing the oldest 3 of 7 matching dead letters (--limit 3)" in " ".join(text.split())


def test_progress_is_kept_per_filter_set() -> None:
    """Issue 26 item 4: replay progress was one per (DLQ, destination), whatever the filters.
    Now each filter set that decides the same way on every run has its own; unfiltered runs
    and runs filtered by --until (or limited) keep the progress group they always had."""
    from jobstream.consumers.ops.replay import replay_group

    base = "jobstream-replay.t.dlq.origin"
    for same in (Filters(), Filters(until=NOW), Filters(limit=3)):
        assert same.progress_key() is None and replay_group("t.dlq", "origin", same) == base
    decode = replay_group("t.dlq", "origin", Filters(category="decode"))
    permanent = replay_group("t.dlq", "origin", Filters(category="permanent"))
    assert len({base, decode, permanent}) == 3 and decode.startswith(base + ".f")
    assert decode == replay_group("t.dlq", "origin", Filters(category="decode", until=NOW))
    # a relative --since is kept as typed (normalised), so "-1h" today continues "-60m" of
    # yesterday; an absolute one by its time
    day_ago = NOW - timedelta(days=1)
    assert (Filters(since=NOW, since_text="-1h").progress_key()
            == Filters(since=day_ago, since_text="60m").progress_key())
    assert Filters(since=NOW).progress_key() != Filters(since=day_ago).progress_key()


def test_after_until_holds_progress_only_for_records_failed_after_until() -> None:
    dl = dead_letter()  # failed at NOW
    assert Filters(until=NOW).after_until(dl)
    assert not Filters(until=NOW_MS + 1).after_until(dl)
    assert not Filters(category="permanent").after_until(dl)
    assert not Filters(until=NOW).after_until(DeadLetter.build("t.dlq", 0, 0, None, None, b"", []))
