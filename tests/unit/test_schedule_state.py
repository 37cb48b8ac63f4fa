"""The jobstream.schedules state records (consumers/scheduling/state.py): codec, merge and
the rolling-deploy version rule, and `@job(..., schedule=)`."""

from __future__ import annotations

from typing import Any

import pytest

from jobstream.config.settings import SettingsError, load_settings
from jobstream.consumers import jobs
from jobstream.consumers.scheduling.definitions import collect
from jobstream.consumers.scheduling.state import State, adopt, decode, merge, superseded


def test_round_trip_and_junk() -> None:
    st = State(last_slot="2026-05-01T02:00:00Z", since="2026-04-01T00:00:00Z", paused=True,
               version="v2", previous=("v1",), group="g", by="w1")
    assert decode(st.encode()) == st
    assert decode(None) is None and decode(b"not json") is None and decode(b"[1]") is None
    assert decode(b'{"paused": 1, "previous": "x", "last_slot": 5}') == State(paused=True)


def test_merge_keeps_the_newest_slot_and_the_history() -> None:
    owner = State(last_slot="2026-05-01T02:00:05Z", version="v2", previous=("v1",))
    cli = State(last_slot="2026-05-01T02:00:03Z", paused=True, version="v2")  # read earlier
    got = merge(owner, cli)
    assert got.paused and got.last_slot == "2026-05-01T02:00:05Z" and got.previous == ("v1",)
    assert merge(None, cli) == cli


def test_version_rule() -> None:
    states = {"a": State(version="v2", previous=("v1",), group="g"),
              "b": State(version="v1", group="g"),
              "c": State(version="v9", previous=("v1",), group="other")}
    assert superseded("v1", states, "g") == {"a": "v2"}  # another group's records do not count
    assert superseded("v2", states, "g") == {}
    assert superseded("v3", states, "g") == {}  # unknown here: taken as newer
    assert adopt("v3", states["a"]) == ("v2", "v1")
    assert adopt("v2", states["a"]) == ("v1",)
    assert adopt("v2", None) == ()


@pytest.fixture
def declared(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    reg: dict[str, Any] = {}
    sch: dict[str, Any] = {}
    monkeypatch.setattr(jobs, "_REGISTRY", reg)
    monkeypatch.setattr(jobs, "_SCHEDULES", sch)
    monkeypatch.delenv("JOBSTREAM_CONFIG", raising=False)
    return sch


def test_job_decorator_declares_a_schedule(declared: dict[str, Any]) -> None:
    @jobs.job("reports.daily", schedule="0 2 * * *", timezone="Europe/Berlin",
              payload={"day": "today"})
    def daily(payload: dict[str, Any], ctx: Any) -> None: ...

    got = collect(load_settings(), jobs.declared_schedules())["reports.daily"]
    assert got.cfg.job_type == "reports.daily" and got.cron.tz == "Europe/Berlin"
    assert got.cfg.payload == {"day": "today"} and got.cron.wall_clock


def test_bad_declared_cron_names_the_schedule_without_a_traceback(declared: dict[str, Any]
                                                                  ) -> None:
    @jobs.job("reports.hourly", schedule="0 25 * * *")  # no error at import time
    def hourly(payload: dict[str, Any], ctx: Any) -> None: ...

    with pytest.raises(SettingsError) as e:
        collect(load_settings(), jobs.declared_schedules())
    assert "schedule 'reports.hourly'" in str(e.value) and "Bad hour" in str(e.value)
    assert "Traceback" not in str(e.value)


def test_schedule_metrics() -> None:
    from prometheus_client import generate_latest

    from jobstream.consumers.metrics import Metrics

    m = Metrics()
    m.schedule_fired("billing.nightly", 3, 0)
    m.schedule_fired("billing.nightly", 1, 5)
    text = generate_latest(m.registry).decode()
    assert 'jobstream_schedule_firings_total{schedule="billing.nightly"} 4.0' in text
    assert 'jobstream_schedule_missed_slots_total{schedule="billing.nightly"} 5.0' in text
