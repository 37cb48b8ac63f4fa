"""Settings -> librdkafka configuration dictionaries (settings as data, one builder)."""

from __future__ import annotations

from typing import Any

from jobstream.config.logging import kafka_logger
from jobstream.config.settings import Assignment, KafkaSettings, SecurityProtocol, WorkerSettings


def client_config(kafka: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": kafka.client_id,
        "security.protocol": kafka.security_protocol.value,
        # librdkafka's lines through the product's log (rate limited), not raw to stderr
        "logger": kafka_logger(),
    }
    if kafka.security_protocol in (SecurityProtocol.SASL_SSL, SecurityProtocol.SASL_PLAINTEXT):
        conf["sasl.mechanism"] = kafka.sasl_mechanism
        if kafka.sasl_username is not None:
            conf["sasl.username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            conf["sasl.password"] = kafka.sasl_password.get_secret_value()
    if kafka.security_protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL):
        for key, value in (
            ("ssl.ca.location", kafka.ssl_ca_location),
            ("ssl.certificate.location", kafka.ssl_certificate_location),
            ("ssl.key.location", kafka.ssl_key_location),
        ):
            if value:
                conf[key] = value
        if kafka.ssl_key_password is not None:
            conf["ssl.key.password"] = kafka.ssl_key_password.get_secret_value()
    conf.update(kafka.extra)
    conf.update(overrides)
    return conf


def group_config(ws: WorkerSettings) -> dict[str, Any]:
    """The group-protocol settings of a worker's consumer."""
    if ws.assignment is Assignment.CONSUMER_PROTOCOL:
        # Range on the server: each topic spread evenly, and moves are still incremental.
        # The session timeout is the broker's (librdkafka refuses session.timeout.ms here).
        return {"group.protocol": "consumer", "group.remote.assignor": "range"}
    return {
        "partition.assignment.strategy": ws.assignment.value,
        "session.timeout.ms": ws.session_timeout_ms,
    }


def redacted(conf: dict[str, Any]) -> dict[str, Any]:
    """A copy safe to log: secrets replaced."""
    return {k: ("***" if "password" in k or "secret" in k else v) for k, v in conf.items()}
