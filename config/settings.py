"""The one settings model: environment `JOBSTREAM_*` (`__` nests) over an optional YAML file.

Precedence, highest first: explicit keyword arguments, environment, the YAML file named by
`JOBSTREAM_CONFIG`, defaults. A bad value fails at start-up with the setting's dotted name.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import pydantic_settings
import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from jobstream.config.jobtypes import (
    DEFAULT_TIERS,
    CircuitBreakerSettings,
    DlqGuardSettings,
    JobTypeSettings,
    Ordering,
)
from jobstream.config.schedules import ScheduleSettings, check_names
from jobstream.config.sections import (
    Assignment,
    BrokerSettings,
    KafkaSettings,
    LogSettings,
    Mode,
    SecurityProtocol,
    WorkerSettings,
)
from jobstream.config.settings_errors import describe_env_parse_error, describe_errors, unknown_env
from jobstream.config.ui_section import UiSettings

# The sections live in config/sections.py; they are imported from here as before.
__all__ = [
    "DEFAULT_TIERS", "Assignment", "BrokerSettings", "CircuitBreakerSettings",
    "DlqGuardSettings", "JobTypeSettings", "KafkaSettings", "LogSettings", "Mode", "Ordering",
    "SecurityProtocol", "Settings", "SettingsError", "WorkerSettings", "load_settings",
]


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names it."""


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the file named by JOBSTREAM_CONFIG; a missing or malformed file is an error."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("JOBSTREAM_CONFIG")
        if not path:
            return {}
        try:
            data = yaml.safe_load(Path(path).read_text())
        except OSError as e:
            raise SettingsError(f"JOBSTREAM_CONFIG={path}: cannot read: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise SettingsError(f"JOBSTREAM_CONFIG={path}: not valid YAML: {_yaml_problem(e)}")\
                from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise SettingsError(f"JOBSTREAM_CONFIG={path}: expected a mapping at the top level")
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JOBSTREAM_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    kafka: KafkaSettings = Field(
        KafkaSettings(), description="How clients reach the Kafka cluster."
    )
    worker: WorkerSettings = Field(
        WorkerSettings(), description="The worker: group, mode, limits, commits, HTTP server."
    )
    log: LogSettings = Field(LogSettings(), description="Log output.")
    broker: BrokerSettings = Field(
        BrokerSettings(), description="The local development broker run by `jobstream broker`."
    )
    ui: UiSettings = Field(UiSettings(), description="The operator console, `jobstream ui`.")
    jobs: dict[str, JobTypeSettings] = Field(
        default_factory=dict,
        description="Settings per job type, by job type name; a job type not listed gets the "
        "defaults. In the environment `JOBSTREAM_JOBS__<TYPE>__<KEY>` works for names "
        "without dots; for others, the YAML file or the whole mapping as JSON in "
        "`JOBSTREAM_JOBS`.",
    )
    schedules: dict[str, ScheduleSettings] = Field(
        default_factory=dict,
        description="Recurring (cron) schedules, by name (docs/scheduling.md); a name also "
        "used by `@job(..., schedule=)` overrides that one.",
    )
    # NoDecode: the environment gives a path list (os.pathsep), not JSON; see _schema_dirs.
    schema_dirs: Annotated[tuple[Path, ...], NoDecode] = Field(
        (),
        description="Directories of the job types' Avro schemas (`<dir>/<job_type>/v<N>.avsc`); "
        "jobstream ships none. In the environment, separated by `:` (`;` on Windows).",
    )
    app: str | None = Field(
        None, description="Job module `jobstream worker` imports, e.g. `myservice.jobs`."
    )
    config: str | None = Field(
        None,
        description="The YAML settings file, read from `JOBSTREAM_CONFIG` and kept for display.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    @field_validator("schema_dirs", mode="before")
    @classmethod
    def _schema_dirs(cls, v: Any) -> Any:
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):  # the JSON list form still works
                try:
                    return json.loads(text)
                except ValueError:
                    pass
            else:
                return tuple(p for p in text.split(os.pathsep) if p)
        if isinstance(v, (list, tuple)):
            return v
        raise ValueError(
            f"expected a list of directories, or one string of them separated by {os.pathsep!r}"
        )

    @field_validator("schedules")
    @classmethod
    def _schedule_names(cls, v: dict[str, ScheduleSettings]) -> dict[str, ScheduleSettings]:
        return check_names(v)

    def job(self, job_type: str) -> JobTypeSettings:
        """Settings of one job type; defaults when it is not configured."""
        return self.jobs.get(job_type) or JobTypeSettings()


_log = logging.getLogger("jobstream.settings")
_warned: set[str] = set()  # each unknown variable is named once per process


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into one readable SettingsError (never with
    a secret in it), and warn about `JOBSTREAM_*` variables that name no setting."""
    for warning in unknown_env(os.environ, Settings):
        if warning not in _warned:
            _warned.add(warning)
            _log.warning(warning)
    try:
        return Settings(**overrides)
    except ValidationError as e:
        raise SettingsError(describe_errors(e, Settings)) from None
    except pydantic_settings.SettingsError as e:
        raise SettingsError(describe_env_parse_error(str(e), os.environ)) from None


def _yaml_problem(e: yaml.YAMLError) -> str:
    """The problem and its position, without the snippet of the file (it may hold a secret)."""
    if isinstance(e, yaml.MarkedYAMLError):
        parts = [
            text + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark else "")
            for text, mark in ((e.context, e.context_mark), (e.problem, e.problem_mark))
            if text
        ]
        return ": ".join(parts) or "syntax error"
    return type(e).__name__
