"""A start-up check that the brokers can be reached and accept our credentials.

librdkafka treats a rejected password or certificate like a network blip: it logs, backs off and
retries forever, so without this check a misconfigured worker hangs (or fails half a minute
later with a timeout that does not say why). `check_connection` fetches metadata once and turns
the first authentication or TLS failure into one line naming the cause and the address tried.
It never echoes a secret: the message carries only librdkafka's error text, the protocol, the
mechanism and the user name.
"""

from __future__ import annotations

import logging
import re
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from jobstream.config.kafka import client_config
from jobstream.config.settings import KafkaSettings, SecurityProtocol

DEFAULT_TIMEOUT_S = 15.0

# "sasl_ssl://127.0.0.1:9094/bootstrap: " and " (after 3ms in state AUTH_REQ)" are noise in a
# one-line error: the address is named once by us.
_PREFIX = re.compile(r"^(?:FAIL \[[^]]*\] \[[^]]*\]: )?(?:[a-z_]+://)?[^\s/]+/[\w-]+: ")
_SUFFIX = re.compile(r"\s*\(after \d+ms in state \w+[^)]*\)\s*$")
# The broker refusing our TLS client (e.g. "alert bad certificate", "alert certificate required")
# arrives as a transport error carrying a TLS alert; it is as final as a failed handshake.
# Other transport errors, even over TLS ("SSL connection closed by peer"), may be transient.
_TLS_ALERT = re.compile(r"\balert\b", re.IGNORECASE)
# Our side refusing the broker's certificate; reported as _SSL or _TRANSPORT, whichever of the
# connection attempts is seen first.
_UNTRUSTED = re.compile(r"certificate verify failed", re.IGNORECASE)


class ConnectionCheckError(RuntimeError):
    """The brokers cannot be used with these settings; the message says why, in one line."""


class _Capture(logging.Handler):
    """Keeps librdkafka's connection-failure log lines (for the reason) off stderr."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("FAIL"):
            self.failures.append(msg)


def _clean(text: str) -> str:
    return _SUFFIX.sub("", _PREFIX.sub("", text.strip()))


def check_connection(kafka: KafkaSettings, timeout: float = DEFAULT_TIMEOUT_S) -> int:
    """Fetch cluster metadata with these settings; return the number of brokers. Raise
    ConnectionCheckError at the first authentication or TLS failure, or when no broker answers
    within `timeout` seconds."""
    where = f"Kafka at {kafka.bootstrap_servers} ({kafka.security_protocol.value})"
    capture = _Capture()
    logger = logging.getLogger(f"jobstream.kafka.check.{id(capture)}")
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    errors: list[KafkaError] = []
    try:
        admin = AdminClient(
            client_config(kafka, logger=logger, error_cb=errors.append)
        )
    except KafkaException as e:
        # Raised at construction: unreadable certificate/key files or a wrong key password.
        err = e.args[0] if e.args else e
        text = err.str() if isinstance(err, KafkaError) else str(err)
        raise ConnectionCheckError(
            f"cannot connect to {where}: invalid client settings: {_clean(text)}"
            f"{_key_hint(kafka, text)}"
        ) from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                md = admin.list_topics(timeout=max(0.1, min(1.0, remaining)))
                if md.brokers:
                    return len(md.brokers)
            except KafkaException:
                pass  # the reason, if any, comes through error_cb / the log
            admin.poll(0)  # serves error_cb
            reason = final_reason(kafka, errors)
            if reason:
                raise ConnectionCheckError(f"cannot connect to {where}: {reason}")
            if time.monotonic() >= deadline:
                last = capture.failures[-1] if capture.failures else ""
                detail = _clean(last) if last else "no broker answered"
                raise ConnectionCheckError(
                    f"cannot connect to {where}: no broker reachable within {timeout:.0f}s "
                    f"({detail}){_protocol_hint(kafka, last)}"
                )
    finally:
        logger.removeHandler(capture)


def final_reason(kafka: KafkaSettings, errors: list[KafkaError]) -> str | None:
    """The first error that retrying cannot fix, worded for the operator; else None."""
    for err in errors:
        code, text = err.code(), _clean(err.str())
        if code == KafkaError._AUTHENTICATION:
            who = f"user {kafka.sasl_username!r}" if kafka.sasl_username else "no user name set"
            return (
                f"authentication failed ({kafka.sasl_mechanism}, {who}): {text}; "
                "check kafka.sasl_username and kafka.sasl_password"
            )
        if _UNTRUSTED.search(text):
            return (
                f"the broker's TLS certificate is not trusted: {text}; check kafka.ssl_ca_location "
                "(the CA that signed the broker's certificate)"
            )
        if code == KafkaError._SSL:
            return f"TLS error: {text}; check kafka.ssl_ca_location"
        if code == KafkaError._TRANSPORT and _TLS_ALERT.search(text):
            hint = (
                "; the listener may require a client certificate: set "
                "kafka.ssl_certificate_location and kafka.ssl_key_location"
                if not kafka.ssl_certificate_location
                else "; the broker rejected the client certificate"
            )
            return f"TLS connection rejected by the broker: {text}{hint}"
    return None


class ErrorWatch:
    """A client's error_cb: remembers the last error that retrying cannot fix (a rejected
    password or certificate) and how long such errors have kept coming, so a running client
    can say why it is stuck, and a worker can stop instead of retrying for ever."""

    def __init__(self, kafka: KafkaSettings, quiet_reset_s: float = 30.0) -> None:
        self._kafka = kafka
        self._reset_s = quiet_reset_s
        self.reason: str | None = None
        self._first = self._last = 0.0

    def __call__(self, err: KafkaError) -> None:
        reason = final_reason(self._kafka, [err])
        if reason is None:
            return
        now = time.monotonic()
        if self.reason is None or now - self._last > self._reset_s:
            self._first = now  # a new spell of failures, not the tail of an old one
        self.reason, self._last = reason, now

    def failing_for(self, now: float | None = None) -> float:
        """Seconds the current spell of unfixable errors has lasted (0 when there is none)."""
        now = time.monotonic() if now is None else now
        if self.reason is None or now - self._last > self._reset_s:
            return 0.0
        return self._last - self._first

    def explain(self) -> str:
        """': <reason>' when one is known, for appending to a timeout message."""
        current = self.reason and time.monotonic() - self._last <= self._reset_s
        return f": {self.reason}" if current else ""


def _key_hint(kafka: KafkaSettings, text: str) -> str:
    if "ssl.key" in text:  # unreadable key, or encrypted with another (or no) password
        return " (check kafka.ssl_key_location and kafka.ssl_key_password)"
    if "ssl." in text:
        return " (check the kafka.ssl_*_location files)"
    return ""


def _protocol_hint(kafka: KafkaSettings, raw: str) -> str:
    # A peer that hangs up during the first request is typically a TLS listener.
    if kafka.security_protocol is SecurityProtocol.PLAINTEXT and "APIVERSION_QUERY" in raw:
        return "; the listener may expect TLS or SASL (kafka.security_protocol)"
    return ""
