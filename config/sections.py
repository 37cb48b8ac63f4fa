"""The sections of the settings model (kafka, worker, jobs.<type>, log, broker), one class
each. Every field has a description: the configuration reference (docs/configuration.md) is
generated from them, and a test fails when one is missing. Time settings use the duration
types of config/durations.py."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from jobstream.config.durations import Millis, Seconds
from jobstream.config.jobtypes import DlqGuardSettings
from jobstream.config.model import _Model


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


class KafkaSettings(_Model):
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka brokers to connect to: `host:port[,host:port...]`."
    )
    client_id: str = Field(
        "jobstream",
        description="Kafka `client.id` of the workers' and publishers' clients (and the prefix "
        "of the publisher's producer name), so brokers can tell them apart.",
    )
    security_protocol: SecurityProtocol = Field(
        SecurityProtocol.PLAINTEXT,
        description="How clients connect to the brokers: `SSL` and `SASL_SSL` encrypt, `SASL_*` "
        "authenticate with the `sasl_*` settings.",
    )
    sasl_mechanism: str = Field(
        "SCRAM-SHA-512",
        description="SASL mechanism for `SASL_*` protocols: `SCRAM-SHA-512`, `SCRAM-SHA-256` "
        "or `PLAIN`.",
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password; never shown in errors or logs."
    )
    ssl_ca_location: str | None = Field(
        None, description="CA certificate file (PEM) the brokers' certificates are checked with."
    )
    ssl_certificate_location: str | None = Field(
        None, description="Client certificate file (PEM), for brokers that require mutual TLS."
    )
    ssl_key_location: str | None = Field(
        None, description="Private key file (PEM) of the client certificate."
    )
    ssl_key_password: SecretStr | None = Field(
        None, description="Password of the client's private key; never shown."
    )
    extra: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="librdkafka properties jobstream does not model, passed to every client "
        'as they are, e.g. `{"linger.ms": 5}`.',
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _bootstrap(cls, v: str) -> str:
        for part in v.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {v!r}")
        return v


class WorkerSettings(_Model):
    group_id: str = Field(
        "jobstream-workers",
        description="Kafka consumer group of the workers: workers of one group share the "
        "partitions.",
    )
    mode: Mode = Field(
        Mode.TRANSACTIONAL,
        description="`transactional`: each interval's outcomes and offsets commit in one Kafka "
        "transaction; `at_least_once`: no transactions, offsets committed in the background.",
    )
    max_in_flight: int = Field(
        64, ge=1, le=100_000,
        description="Handlers running at once in one worker (threads and async handlers alike).",
    )
    max_buffered: int = Field(
        1000, ge=0, le=1_000_000,
        description="Jobs fetched beyond `max_in_flight` before fetching pauses; it resumes at "
        "half of that. Pausing drops librdkafka's prefetch, so it should be rare.",
    )
    fetch_wait_max_ms: Millis = Field(
        25, ge=1, le=10_000,
        description="librdkafka `fetch.wait.max.ms`: how long a resumed partition's first fetch "
        "can wait behind a long poll. Lower refills faster; each idle worker then sends about "
        "1000 / `fetch_wait_max_ms` fetch requests per second per broker.",
    )
    commit_interval_ms: Millis = Field(
        500, ge=10, le=60_000,
        description="Longest commit interval: one transaction (or offset commit) covers the "
        "outcomes of at most this long.",
    )
    commit_max_records: int = Field(
        5_000, ge=1, description="Jobs finished in one interval after which it commits early."
    )
    shutdown_grace_s: Seconds = Field(
        30.0, ge=0,
        description="On SIGTERM, how long in-flight jobs get to finish before the worker exits.",
    )
    revoke_grace_s: Seconds = Field(
        10.0, ge=0,
        description="In a rebalance, how long running jobs of revoked partitions get to finish; "
        "then they are left to the partitions' next owner to run again.",
    )
    assignment: Assignment = Field(
        Assignment.RANGE,
        description="How the group spreads partitions over workers (see Scaling and "
        "rebalances).",
    )
    # Classic protocols only; with consumer-protocol the broker's group config decides it.
    session_timeout_ms: Millis = Field(
        10_000, ge=1000,
        description="A worker silent for this long leaves the group (classic protocols; with "
        "`consumer-protocol` the broker's group config sets it).",
    )
    max_poll_interval_ms: Millis = Field(
        300_000, ge=1000,
        description="librdkafka `max.poll.interval.ms`: a worker whose loop does not poll for "
        "this long leaves the group.",
    )
    processes: int | Literal["auto"] = Field(
        1,
        description="Worker processes in one pod (`jobstream worker --processes N`): each a "
        "group member with its own poll thread, behind one supervisor and one HTTP port; "
        "`auto`: the CPUs the container may use (its cgroup CPU limit).",
    )

    @field_validator("processes")
    @classmethod
    def _processes(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= 64:
            raise ValueError(f"must be 1 to 64 or `auto`, got {v}")
        return v
    http_host: str = Field(
        "127.0.0.1",
        description="Address of the HTTP server (`/metrics`, `/healthz`, `/readyz`); "
        "`0.0.0.0` to be reachable from outside the host or pod.",
    )
    http_port: int = Field(
        9400, ge=0, le=65535, description="Port of the HTTP server; `0` turns it off."
    )
    retry_jitter: float = Field(
        0.1, ge=0, lt=1,
        description="Random spread of each retry's delay, as a share of it (`0.1`: +/- 10 %), so "
        "jobs that failed together do not all come back at once.",
    )
    ledger_ttl_s: Seconds = Field(
        7 * 86_400.0, gt=0,
        description="How long a job's recorded success keeps a duplicate of it from running: "
        "the ledger topics' retention and the views' expiry.",
    )
    batch_retention_s: Seconds = Field(
        7 * 86_400.0, gt=0,
        description="How long a closed batch's records stay on jobstream.batches (for "
        "`batches show`, and so a member replayed from the DLQ updates its counts) before the "
        "batch owner retires them with tombstones.",
    )
    scheduler_snapshot_changes: int = Field(
        10_000, ge=0,
        description="The scheduler writes a snapshot of a T.scheduled partition's pending index "
        "after reading this many records since its last one (and when it stops), so a new "
        "owner restores from it (docs/scheduling.md); `0` turns snapshots off.",
    )
    scheduler_snapshot_every_s: Seconds = Field(
        60.0, ge=0,
        description="Least time between two snapshots of one T.scheduled partition.",
    )
    dlq_guard: DlqGuardSettings | None = Field(
        None,
        description="Stops the worker (exit code 4) when most finished jobs are dead-lettered: "
        "a bad deploy, not bad jobs. Off unless set.",
    )
    # A job whose runs took the worker process down this often is dead-lettered as `crashed`
    # (consumers/runtime/crashes.py); 0 turns the start records off.
    max_crashes: int = Field(
        3, ge=0, le=100,
        description="A job whose runs took the worker process down this often is "
        "dead-lettered as `crashed`; `0` turns crash tracking off (`1` is refused).",
    )

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
    level: str = Field(
        "INFO", description="Log level: `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`."
    )
    format: str = Field(
        "auto",
        description="`json` (one JSON object a line), `console` (for people) or `auto` "
        "(console on a terminal, json otherwise).",
    )

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

    port: int = Field(9092, ge=1024, le=65535, description="Port clients connect to.")
    controller_port: int | None = Field(
        None, description="Port of the broker's KRaft controller; default `port` + 1."
    )
    version: str = Field(
        "4.1.1", description="Kafka version to run; its jars are fetched with Maven once."
    )
    data_dir: Path = Field(
        Path.home() / ".cache" / "jobstream" / "broker",
        description="Where the broker keeps its data, its log and its pid file.",
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "jobstream" / "jars",
        description="Where the fetched Kafka jars are kept, one folder per version.",
    )
    # 512m ran out during two test suites in a row (thousands of partitions).
    heap: str = Field("1g", description="JVM heap of the broker (`-Xms` and `-Xmx`), e.g. `2g`.")
