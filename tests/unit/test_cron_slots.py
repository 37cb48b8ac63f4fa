"""Slots of recurring schedules (consumers/scheduling/cron.py) with fixed clocks: next slot,
missed slots under each catch_up mode, and Europe/Berlin's daylight-saving changes (2026:
clocks go forward at 02:00 CET on 29 March, back at 03:00 CEST on 25 October)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobstream.config.schedules import CatchUp
from jobstream.config.settings import SettingsError, load_settings
from jobstream.consumers.scheduling.cron import Cron, CronError, plan, slot_id
from jobstream.consumers.scheduling.definitions import collect, version_of


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def ids(slots: list[datetime]) -> list[str]:
    return [slot_id(s) for s in slots]


def first(cron: Cron, t: datetime, n: int) -> list[str]:
    return ids([s for s, _ in zip(cron.after(t), range(n), strict=False)])


def test_next_slot_is_strictly_after() -> None:
    c = Cron("0 2 * * *", "Europe/Berlin")
    assert slot_id(c.next(utc(2026, 1, 10, 0, 0)) or utc(1970, 1, 1)) == "2026-01-10T01:00:00Z"
    # Exactly at a slot: the next one, not the same.
    assert slot_id(c.next(utc(2026, 1, 10, 1, 0)) or utc(1970, 1, 1)) == "2026-01-11T01:00:00Z"
    assert first(Cron("*/20 * * * * *"), utc(2026, 1, 1, 0, 0, 5), 3) == [
        "2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z", "2026-01-01T00:01:00Z"]


def test_spring_forward_skipped_time_fires_at_next_valid_instant() -> None:
    # 02:30 does not exist in Berlin on 29 March 2026: it fires at 03:00 CEST (01:00 UTC).
    c = Cron("30 2 * * *", "Europe/Berlin")
    assert first(c, utc(2026, 3, 28, 12), 3) == [
        "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"]
    # An hour-wide wall-clock schedule at 02:00 also moves to 03:00, once.
    assert first(Cron("0 2 * * *", "Europe/Berlin"), utc(2026, 3, 28, 12), 2) == [
        "2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"]
    # Read backwards too (the catch-up plan's newest slots).
    back = [s for s, _ in zip(c.upto(utc(2026, 3, 30, 12)), range(3), strict=False)]
    assert ids(back) == ["2026-03-30T00:30:00Z", "2026-03-29T01:00:00Z", "2026-03-28T01:30:00Z"]


def test_fall_back_repeated_time_fires_once() -> None:
    # 02:30 happens twice in Berlin on 25 October 2026 (CEST, then CET): it fires once.
    c = Cron("30 2 * * *", "Europe/Berlin")
    assert first(c, utc(2026, 10, 24, 12), 3) == [
        "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z", "2026-10-27T01:30:00Z"]
    # Asked from inside the second 02:xx hour (02:10 CET = 01:10 UTC): 02:30 has fired already
    # in this day's first pass, the next slot is the next day's.
    assert first(c, utc(2026, 10, 25, 1, 10), 1) == ["2026-10-26T01:30:00Z"]
    back = [s for s, _ in zip(c.upto(utc(2026, 10, 27, 12)), range(3), strict=False)]
    assert ids(back) == ["2026-10-27T01:30:00Z", "2026-10-26T01:30:00Z", "2026-10-25T00:30:00Z"]


def test_interval_schedule_follows_real_time_through_both_changes() -> None:
    c = Cron("*/30 * * * *", "Europe/Berlin")
    autumn = first(c, utc(2026, 10, 24, 23, 59), 6)
    assert autumn == ["2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z",
                      "2026-10-25T01:30:00Z", "2026-10-25T02:00:00Z", "2026-10-25T02:30:00Z"]
    spring = first(c, utc(2026, 3, 29, 0, 29), 3)
    assert spring == ["2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z"]


NOW = utc(2026, 5, 1, 12, 0, 0)
EVERY_SECOND = Cron("* * * * * *")


def test_catch_up_latest_fires_the_newest_missed_and_the_on_time() -> None:
    p = plan(EVERY_SECOND, NOW - timedelta(seconds=10), NOW, CatchUp.LATEST)
    # 11:59:51..12:00:00 due; within the 2 s grace (11:59:58..12:00:00) on time.
    assert ids(p.fire) == ["2026-05-01T11:59:57Z", "2026-05-01T11:59:58Z",
                           "2026-05-01T11:59:59Z", "2026-05-01T12:00:00Z"]
    assert p.missed == 6 and p.last == NOW


def test_catch_up_all_up_to_max_and_none() -> None:
    p = plan(EVERY_SECOND, NOW - timedelta(seconds=10), NOW, CatchUp.ALL, max_catch_up=100)
    assert len(p.fire) == 10 and p.missed == 0
    p = plan(EVERY_SECOND, NOW - timedelta(seconds=10), NOW, CatchUp.ALL, max_catch_up=3)
    assert ids(p.fire)[0] == "2026-05-01T11:59:55Z" and len(p.fire) == 6 and p.missed == 4
    p = plan(EVERY_SECOND, NOW - timedelta(seconds=10), NOW, CatchUp.NONE)
    assert ids(p.fire) == ["2026-05-01T11:59:58Z", "2026-05-01T11:59:59Z",
                           "2026-05-01T12:00:00Z"]
    assert p.missed == 7


def test_daily_schedule_after_three_days_down() -> None:
    c = Cron("0 2 * * *", "Europe/Berlin")
    base = utc(2026, 4, 27, 0, 0, 1)  # the 27th's slot fired
    now = utc(2026, 4, 30, 9)
    assert ids(plan(c, base, now, CatchUp.LATEST).fire) == ["2026-04-30T00:00:00Z"]
    assert plan(c, base, now, CatchUp.LATEST).missed == 2
    assert ids(plan(c, base, now, CatchUp.ALL).fire) == [
        "2026-04-28T00:00:00Z", "2026-04-29T00:00:00Z", "2026-04-30T00:00:00Z"]
    assert plan(c, base, now, CatchUp.NONE).fire == []
    assert plan(c, base, now, CatchUp.NONE).last == utc(2026, 4, 30, 0)


def test_nothing_due() -> None:
    p = plan(Cron("0 2 * * *"), NOW, NOW + timedelta(minutes=5), CatchUp.ALL)
    assert p.fire == [] and p.missed == 0 and p.last is None


def test_long_outage_of_a_per_second_schedule_is_bounded() -> None:
    p = plan(EVERY_SECOND, NOW - timedelta(days=3), NOW, CatchUp.ALL, max_catch_up=5)
    assert len(p.fire) == 8 and p.cut and p.last == NOW  # 5 caught up + 3 on time


@pytest.mark.parametrize("expr, why", [
    ("61 2 * * *", "Bad minute"), ("* * *", "expected 5 fields"), ("0 0 31 2 *", "Bad day"),
])
def test_bad_cron(expr: str, why: str) -> None:
    with pytest.raises(CronError, match=why):
        Cron(expr)


def test_bad_settings_name_the_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBSTREAM_CONFIG", raising=False)
    with pytest.raises(SettingsError) as e:
        load_settings(schedules={"nightly": {"job_type": "a", "cron": "0 2 * * *",
                                             "timezone": "Europe/Berlinn"}})
    assert "schedules.nightly.timezone: unknown time zone 'Europe/Berlinn'" in str(e.value)
    with pytest.raises(SettingsError, match=r"schedules.hourly.cron: cron '0 \* \* \*'"):
        load_settings(schedules={"hourly": {"job_type": "a", "cron": "0 * * *"}})
    with pytest.raises(SettingsError, match="schedule name 'bad name'"):
        load_settings(schedules={"bad name": {"job_type": "a", "cron": "0 * * * *"}})


def test_declared_schedules_checked_and_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBSTREAM_CONFIG", raising=False)
    s = load_settings()
    declared = {"reports.daily": {"job_type": "reports.daily", "cron": "0 2 * * *",
                                  "timezone": "Mars/Olympus"}}
    with pytest.raises(SettingsError, match=r"schedule 'reports\.daily'.*unknown time zone"):
        collect(s, declared)
    ok = {"reports.daily": {**declared["reports.daily"], "timezone": "Europe/Berlin"}}
    assert collect(s, ok)["reports.daily"].cron.tz == "Europe/Berlin"
    s2 = load_settings(schedules={"reports.daily": {"job_type": "reports.daily",
                                                    "cron": "0 3 * * *"}})
    got = collect(s2, declared)  # the setting of the same name wins; the bad zone is unused
    assert got["reports.daily"].cfg.cron == "0 3 * * *"
    assert version_of(collect(s, ok)) != version_of(got)
    assert version_of(collect(s, ok)) == version_of(collect(s, dict(ok)))
