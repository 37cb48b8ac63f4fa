"""Issue 28: every time setting takes one duration type. Before, `worker.shutdown_grace_s: 30s`
or `JOBSTREAM_WORKER__COMMIT_INTERVAL_MS=1s` failed ("Input should be a valid number"), while
retry tiers took "10s" and no plain number: each time setting had its own rules. Now each takes
a plain number in the unit its name gives (so every existing config keeps working) or a number
with a unit ("500ms", "30s", "1m", "7d"), and stores it in the field's unit; a bad value names
the setting."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, ValidationError

from jobstream.config.durations import DurationUnit, Millis, Seconds
from jobstream.config.settings import (
    CircuitBreakerSettings,
    DlqGuardSettings,
    JobTypeSettings,
    Settings,
    SettingsError,
    WorkerSettings,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("JOBSTREAM_"):
            monkeypatch.delenv(name)
    yield


class _M(BaseModel):
    s: Seconds = 1.0
    ms: Millis = 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30.0), ("1m", 60.0), ("2h", 7200.0), ("7d", 604_800.0),
     ("1.5s", 1.5), (" 10 S ", 10.0), ("0s", 0.0)],
)
def test_seconds_take_each_unit(text: str, seconds: float) -> None:
    assert _M(s=text).s == seconds


@pytest.mark.parametrize(
    ("text", "millis"),
    [("500ms", 500), ("30s", 30_000), ("1m", 60_000), ("1h", 3_600_000), ("7d", 604_800_000),
     ("1.5s", 1500), ("0.25s", 250)],
)
def test_millis_take_each_unit(text: str, millis: int) -> None:
    value = _M(ms=text).ms
    assert value == millis and type(value) is int


@pytest.mark.parametrize(("value", "seconds"), [(30, 30.0), (2.5, 2.5), ("30", 30.0)])
def test_plain_numbers_keep_seconds(value: object, seconds: float) -> None:
    assert _M(s=value).s == seconds


@pytest.mark.parametrize(("value", "millis"), [(500, 500), ("500", 500), (250.0, 250)])
def test_plain_numbers_keep_milliseconds(value: object, millis: int) -> None:
    assert _M(ms=value).ms == millis


@pytest.mark.parametrize("text", ["10x", "s", "ten seconds", "1h30m", "nan s", "infs"])
def test_bad_strings_are_rejected_naming_the_value(text: str) -> None:
    with pytest.raises(ValidationError, match="invalid duration"):
        _M(s=text)
    with pytest.raises(ValidationError, match="invalid duration"):
        _M(ms=text)


def test_a_fraction_of_a_millisecond_is_rejected() -> None:
    with pytest.raises(ValidationError, match="whole number of milliseconds"):
        _M(ms="1.5ms")


def test_negative_durations_are_rejected_where_a_minimum_exists() -> None:
    with pytest.raises(ValidationError, match="must not be negative"):
        WorkerSettings(shutdown_grace_s="-1s")
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        WorkerSettings(shutdown_grace_s=-1)
    with pytest.raises(ValidationError, match="greater than 0"):
        JobTypeSettings(timeout_s="0s")
    with pytest.raises(ValidationError, match="greater than or equal to 10"):
        WorkerSettings(commit_interval_ms="5ms")
    with pytest.raises(ValidationError, match="greater than or equal to 60000"):
        JobTypeSettings(retention_ms="59s")
    with pytest.raises(ValidationError, match="less than or equal to 60000"):
        WorkerSettings(commit_interval_ms="2m")


def test_every_time_setting_takes_a_unit() -> None:
    w = WorkerSettings(
        fetch_wait_max_ms="0.1s", commit_interval_ms="1s", shutdown_grace_s="1m",
        revoke_grace_s="500ms", session_timeout_ms="45s", max_poll_interval_ms="10m",
        ledger_ttl_s="3d",
    )
    assert (w.fetch_wait_max_ms, w.commit_interval_ms, w.session_timeout_ms) == (100, 1000, 45_000)
    assert w.max_poll_interval_ms == 600_000
    assert (w.shutdown_grace_s, w.revoke_grace_s, w.ledger_ttl_s) == (60.0, 0.5, 259_200.0)
    j = JobTypeSettings(
        timeout_s="2m", abandon_after_s="90s", retention_ms="7d", dlq_retention_ms="30d",
        retry_tiers=["5s", 60, "10m"],
    )
    assert (j.timeout_s, j.abandon_after_s) == (120.0, 90.0)
    assert (j.retention_ms, j.dlq_retention_ms) == (604_800_000, 2_592_000_000)
    assert j.tier_seconds == (5.0, 60.0, 600.0)
    assert CircuitBreakerSettings(window_s="1m", cooldown_s="10s").cooldown_s == 10.0
    assert DlqGuardSettings(window_s="2m").window_s == 120.0


def _duration_fields(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        if any(isinstance(m, DurationUnit) for m in field.metadata):
            yield prefix + name
        for sub in (JobTypeSettings, WorkerSettings, CircuitBreakerSettings, DlqGuardSettings):
            if sub.__name__ in repr(field.annotation):
                yield from _duration_fields(sub, f"{prefix}{name}.")


def test_every_setting_named_for_a_unit_is_a_duration() -> None:
    named = []
    for model in (WorkerSettings, JobTypeSettings, CircuitBreakerSettings, DlqGuardSettings):
        named += [
            f"{model.__name__}.{n}" for n, f in model.model_fields.items()
            if n.endswith(("_s", "_ms"))
            and not any(isinstance(m, DurationUnit) for m in f.metadata)
        ]
    assert named == []
    assert "worker.ledger_ttl_s" in set(_duration_fields(Settings))


def test_environment_and_yaml_take_units(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    path = f"{tmp_path}/c.yaml"
    with open(path, "w") as f:
        f.write("worker: {revoke_grace_s: 2s}\njobs: {a: {timeout_s: 1m, retry_tiers: [10, 1m]}}\n")
    monkeypatch.setenv("JOBSTREAM_CONFIG", path)
    monkeypatch.setenv("JOBSTREAM_WORKER__COMMIT_INTERVAL_MS", "1s")
    monkeypatch.setenv("JOBSTREAM_WORKER__SHUTDOWN_GRACE_S", "45")
    s = load_settings()
    assert (s.worker.commit_interval_ms, s.worker.shutdown_grace_s) == (1000, 45.0)
    assert (s.worker.revoke_grace_s, s.job("a").timeout_s) == (2.0, 60.0)
    assert s.job("a").tier_seconds == (10.0, 60.0)


def test_a_bad_duration_names_the_setting_and_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBSTREAM_WORKER__SHUTDOWN_GRACE_S", "30 secs")
    with pytest.raises(SettingsError) as e:
        load_settings()
    (line,) = str(e.value).splitlines()[1:]
    assert line.strip().startswith("worker.shutdown_grace_s: invalid duration '30 secs'")
    assert "seconds" in line and "(got '30 secs')" in line


def test_a_bad_retry_tier_names_its_position() -> None:
    with pytest.raises(SettingsError) as e:
        load_settings(jobs={"a": {"retry_tiers": ["10s", "1x"]}})
    assert "jobs.a.retry_tiers.1: invalid duration '1x'" in str(e.value)
