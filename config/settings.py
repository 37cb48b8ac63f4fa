"""The one settings model: environment `JOBSTREAM_*` (`__` nests) over an optional YAML file.

Precedence, highest first: explicit keyword arguments, environment, the YAML file named by
`JOBSTREAM_CONFIG`, defaults. A bad value fails at start-up with the setting's dotted name.
"""

from __future__ import annotations

import json
import logging
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pydantic_settings
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from jobstream.config.durations import parse_duration
from jobstream.config.settings_errors import describe_env_parse_error, describe_errors, unknown_env

DEFAULT_TIERS = ("10s", "1m", "10m")


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names it."""


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class Assignment(StrEnum):
    """How the group spreads partitions over workers (README: Scaling and rebalances)."""

    RANGE = "range"  # classic protocol, eager: every topic spread evenly
    COOPERATIVE_STICKY = "cooperative-sticky"  # classic, incremental: even over all topics only
    CONSUMER_PROTOCOL = "consumer-protocol"  # KIP-848 (Kafka 4.0+), server-side range: both


class Mode(StrEnum):
    TRANSACTIONAL = "transactional"
    AT_LEAST_ONCE = "at_least_once"


class Ordering(StrEnum):
    KEY = "key"  # same key in offset order; failures go through retry topics
    STRICT = "strict"  # failures retried in place while the partition waits


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Model):
    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "jobstream"
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    # Escape hatch for librdkafka properties jobstream does not model (e.g. "linger.ms").
    extra: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("bootstrap_servers")
    @classmethod
    def _bootstrap(cls, v: str) -> str:
        for part in v.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {v!r}")
        return v


class CircuitBreakerSettings(_Model):
    """Circuit breaker for one job type: opens when `failure_ratio` of the handler runs in the
    last `window_s` failed (transient or timeout; at least `min_calls` runs), pauses the job
    type's partitions, and lets one probe through after `cooldown_s`."""

    failure_ratio: float = Field(0.5, gt=0, le=1)
    window_s: float = Field(30.0, gt=0)
    min_calls: int = Field(20, ge=1)
    cooldown_s: float = Field(30.0, ge=0)


class DlqGuardSettings(_Model):
    """Stops the worker (exit code 4) when more than `max_ratio` of the jobs finished in the
    last `window_s` were dead-lettered (at least `min_jobs`): a bad deploy or schema change,
    not bad jobs. Other workers, or the previous release, take the partitions over."""

    max_ratio: float = Field(0.5, gt=0, lt=1)
    window_s: float = Field(60.0, gt=0)
    min_jobs: int = Field(50, ge=1)


class JobTypeSettings(_Model):
    topic: str | None = None  # default jobs.<job_type>
    partitions: int = Field(6, ge=1, le=10_000)
    retry_tiers: tuple[str, ...] = DEFAULT_TIERS
    max_attempts: int = Field(4, ge=1, le=100)
    timeout_s: float = Field(30.0, gt=0)
    # A sync handler past timeout_s cannot be stopped: its job's outcome (retry, DLQ) and its
    # key's next job wait until its thread ends, at most this much longer; then it is abandoned.
    abandon_after_s: float = Field(60.0, ge=0)
    ordering: Ordering = Ordering.KEY
    concurrency: int | None = Field(None, ge=1)  # handlers of this type at once, per worker
    rate_limit: float | None = Field(None, gt=0, description="jobs per second")
    permanent_errors: tuple[str, ...] = ()  # extra exception class names treated as permanent
    circuit_breaker: CircuitBreakerSettings | None = None
    retention_ms: int = Field(7 * 86_400_000, ge=60_000)
    dlq_retention_ms: int = Field(30 * 86_400_000, ge=60_000)

    @field_validator("retry_tiers")
    @classmethod
    def _tiers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        delays = [parse_duration(t) for t in v]
        if delays != sorted(delays) or len(set(delays)) != len(delays):
            raise ValueError(f"tiers must be strictly increasing, got {list(v)}")
        return v

    @property
    def tier_seconds(self) -> tuple[float, ...]:
        return tuple(parse_duration(t) for t in self.retry_tiers)


class WorkerSettings(_Model):
    group_id: str = "jobstream-workers"
    mode: Mode = Mode.TRANSACTIONAL
    max_in_flight: int = Field(64, ge=1, le=100_000)  # handlers running at once
    # Jobs fetched beyond max_in_flight before fetching pauses (resumes at half of it).
    max_buffered: int = Field(1000, ge=0, le=1_000_000)
    # librdkafka fetch.wait.max.ms for the worker: how long a resumed partition's first fetch
    # can wait behind a long poll. Lower refills faster; each idle worker then sends about
    # 1000/fetch_wait_max_ms fetch requests per second per broker.
    fetch_wait_max_ms: int = Field(25, ge=1, le=10_000)
    commit_interval_ms: int = Field(500, ge=10, le=60_000)
    commit_max_records: int = Field(5_000, ge=1)
    shutdown_grace_s: float = Field(30.0, ge=0)
    revoke_grace_s: float = Field(10.0, ge=0)
    assignment: Assignment = Assignment.RANGE
    # Classic protocols only; with consumer-protocol the broker's group config decides it.
    session_timeout_ms: int = Field(10_000, ge=1000)
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    http_host: str = "127.0.0.1"
    http_port: int = Field(9400, ge=0, le=65535)  # 0 disables the HTTP server
    retry_jitter: float = Field(0.1, ge=0, lt=1)
    ledger_ttl_s: float = Field(7 * 86_400.0, gt=0)
    dlq_guard: DlqGuardSettings | None = None
    # A job whose runs took the worker process down this often is dead-lettered as `crashed`
    # (consumers/crashes.py); 0 turns the start records off.
    max_crashes: int = Field(3, ge=0, le=100)

    @field_validator("max_crashes")
    @classmethod
    def _max_crashes(cls, v: int) -> int:
        if v == 1:
            raise ValueError(
                "1 would dead-letter every job running when a worker dies; use 2 or more "
                "(the last run is alone, so the blame is the job's own), or 0 for off"
            )
        return v


class LogSettings(_Model):
    level: str = "INFO"
    format: str = "auto"  # json | console | auto (console on a terminal)

    @field_validator("level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return v.upper()

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        if v not in {"json", "console", "auto"}:
            raise ValueError("use json, console or auto")
        return v


class BrokerSettings(_Model):
    """The local development broker run by `jobstream broker`."""

    port: int = Field(9092, ge=1024, le=65535)
    controller_port: int | None = None  # default port + 1
    version: str = "4.1.1"
    data_dir: Path = Path.home() / ".cache" / "jobstream" / "broker"
    cache_dir: Path = Path.home() / ".cache" / "jobstream" / "jars"
    heap: str = "1g"  # 512m ran out during two test suites in a row (thousands of partitions)


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

    kafka: KafkaSettings = KafkaSettings()
    worker: WorkerSettings = WorkerSettings()
    log: LogSettings = LogSettings()
    broker: BrokerSettings = BrokerSettings()
    jobs: dict[str, JobTypeSettings] = Field(default_factory=dict)
    # NoDecode: the environment gives a path list (os.pathsep), not JSON; see _schema_dirs.
    schema_dirs: Annotated[tuple[Path, ...], NoDecode] = ()
    app: str | None = None  # job module for `jobstream worker`
    config: str | None = None  # the YAML path itself (JOBSTREAM_CONFIG), kept for display

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
