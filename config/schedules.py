"""The `schedules.<name>` section: recurring (cron) schedules fired by the owner of the
jobstream.schedules topic (consumers/scheduling/recurring.py, docs/scheduling.md)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from jobstream.config.model import _Model


class CatchUp(StrEnum):
    LATEST = "latest"  # after downtime, the latest missed slot once
    ALL = "all"  # every missed slot, up to max_catch_up (the newest ones)
    NONE = "none"  # missed slots are skipped


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ScheduleSettings(_Model):
    """One recurring schedule: each slot of `cron` (in `timezone`) publishes one job of
    `job_type`, with the job id `sched:<name>:<slot in UTC>`."""

    job_type: str = Field(description="Job type each firing publishes.")
    cron: str = Field(
        description="Cron expression: 5 fields (`0 2 * * *`), or 6 with seconds first "
        "(`*/5 * * * * *`)."
    )
    timezone: str = Field("UTC", description="IANA time zone the cron is read in.")
    payload: dict[str, Any] = Field(
        default_factory=dict, description="Payload of each job (validated by its schema)."
    )
    key: str | None = Field(None, description="Key of each job; default its job id.")
    catch_up: CatchUp = Field(
        CatchUp.LATEST,
        description="Slots missed while no worker fired (downtime): `latest` fires the newest "
        "once, `all` every one up to `max_catch_up`, `none` none.",
    )
    max_catch_up: int = Field(
        100, ge=0, le=10_000, description="Most missed slots `catch_up: all` fires at once."
    )
    enabled: bool = Field(True, description="`false` keeps the schedule defined but unfired.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from jobstream.consumers.scheduling.cron import CronError, check_cron

        try:
            return check_cron(v)
        except CronError as e:
            raise ValueError(str(e)) from None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from jobstream.consumers.scheduling.cron import CronError, zone

        try:
            zone(v)
        except CronError as e:
            raise ValueError(str(e)) from None
        return v


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):  # no trailing newline
        raise ValueError(
            f"schedule name {name!r}: letters, digits, `.`, `_` and `-`, at most 100"
        )
    return name


def check_names(v: dict[str, ScheduleSettings]) -> dict[str, ScheduleSettings]:
    for name in v:
        check_name(name)
    return v
