"""What reaches the product's log besides its own events: librdkafka's lines (through the logger
client_config gives every client), the standard library's logging and print."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from jobstream.config.kafka import client_config
from jobstream.config.logging import LogThrottle, configure_logging, kafka_logger
from jobstream.config.settings import KafkaSettings, LogSettings
from tests.support.harness import free_port


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """configure_logging into a file (JSON), and the process's logging put back afterwards."""
    root = logging.getLogger()
    handlers, level, stdout = list(root.handlers), root.level, sys.stdout
    try:
        yield tmp_path / "log.jsonl"
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
        sys.stdout = stdout


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _configure(path: Path, **kw: Any) -> Any:
    stream = path.open("a", buffering=1)
    configure_logging(LogSettings(level="INFO", format="json"), stream, **kw)
    return stream


def _rdkafka_record(facility: str, text: str, level: int = logging.ERROR) -> logging.LogRecord:
    """A record as confluent-kafka's log callback makes it."""
    return logging.LogRecord(
        "jobstream.kafka", level, __file__, 0, "%s [%s] %s",
        (facility, "rdkafka#producer-1", text), None,
    )


def test_a_handlers_standard_logging_becomes_json_events(log_file: Path) -> None:
    """Issue 26 item 23: in a worker a handler's logging.info was dropped and logging.warning
    came out as raw text next to the JSON log. Both are JSON events now, with their level and
    logger name, from any thread, exceptions included."""
    _configure(log_file)
    worker_thread = threading.Thread(
        target=lambda: logging.getLogger("my.app").info("charged %s cents", 1299)
    )
    worker_thread.start()
    worker_thread.join()
    logging.getLogger("my.app").warning("slow downstream")
    logging.getLogger("my.app").debug("below the configured level")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("my.app").exception("lost")
    events = _events(log_file)
    assert [(e["event"], e["level"], e["logger"]) for e in events] == [
        ("charged 1299 cents", "info", "my.app"),
        ("slow downstream", "warning", "my.app"),
        ("lost", "error", "my.app"),
    ]
    assert "ValueError: boom" in events[2]["exception"]


def test_print_becomes_a_json_event_when_asked(log_file: Path) -> None:
    """Issue 26 item 23: a handler's print came out as raw text in the worker's JSON log. With
    capture_print (the worker, when its log is JSON) each printed line is an INFO event."""
    _configure(log_file, capture_print=True)
    print("two", "words")
    print("no newline yet", end="")
    print(" ... now")
    events = _events(log_file)
    assert [(e["event"], e["level"], e["logger"]) for e in events] == [
        ("two words", "info", "print"),
        ("no newline yet ... now", "info", "print"),
    ]


def test_librdkafka_lines_become_kafka_events(log_file: Path) -> None:
    """Issue 26 item 23: librdkafka's own lines (`%3|...|FAIL|...`) went to stderr raw. Through
    the kafka logger they are `kafka` events with facility, client and message."""
    _configure(log_file)
    kafka_logger().handle(_rdkafka_record("FAIL", "Connect to ipv4#127.0.0.1:9 failed"))
    [event] = _events(log_file)
    assert {k: event[k] for k in ("event", "level", "facility", "client", "message")} == {
        "event": "kafka",
        "level": "error",
        "facility": "FAIL",
        "client": "rdkafka#producer-1",
        "message": "Connect to ipv4#127.0.0.1:9 failed",
    }


def test_librdkafka_lines_are_rate_limited_per_facility() -> None:
    """Issue 26 item 23: a 3-minute broker outage wrote 810 `%3|FAIL` lines. Per facility a
    burst passes, then one line per interval, which says how many were dropped before it."""
    now = [1000.0]
    throttle = LogThrottle(burst=5, every_s=10.0, clock=lambda: now[0])
    passed = []
    for _ in range(180):  # three minutes of one FAIL line a second
        record = _rdkafka_record("FAIL", "Connection refused")
        if throttle.filter(record):
            passed.append(record)
        now[0] += 1.0
    assert 5 + 16 <= len(passed) <= 5 + 18
    suppressed = [r.js_event.get("suppressed", 0) for r in passed]  # type: ignore[attr-defined]
    assert suppressed[:5] == [0] * 5 and all(n >= 5 for n in suppressed[5:])
    # every line is shown or counted, but for those dropped since the last one shown
    assert 180 - 10 <= len(passed) + sum(suppressed) <= 180
    assert f"({suppressed[5]} like it suppressed)" in passed[5].getMessage()
    other = _rdkafka_record("GETPID", "Failed to acquire transactional PID")
    assert throttle.filter(other)  # another facility has its own budget


def test_every_client_logs_through_the_kafka_logger(
    log_file: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26 item 23: client_config is the one builder of every consumer, producer and
    admin client; each one it builds logs through the product's log, never raw to stderr.

    With a throttle of its own: the kafka logger's one is process-wide, and other tests' dead
    brokers had spent its FAIL lines in the same test process (a CI run saw 211 suppressed, and
    only the consumer's line got through in 20 s)."""
    logger = kafka_logger()
    monkeypatch.setattr(logger, "filters", [LogThrottle() if isinstance(f, LogThrottle) else f
                                            for f in logger.filters])
    dead = f"127.0.0.1:{free_port()}"
    conf = client_config(KafkaSettings(bootstrap_servers=dead))
    assert conf["logger"] is kafka_logger()
    assert client_config(KafkaSettings(), logger=None)["logger"] is None  # overrides still win
    _configure(log_file)
    producer = Producer(conf)
    consumer = Consumer({**conf, "group.id": "g"})
    consumer.subscribe(["t"])
    admin = AdminClient(conf)
    deadline = time.monotonic() + 20
    clients: set[str] = set()
    while len(clients) < 3 and time.monotonic() < deadline:
        for client in (producer, consumer, admin):
            client.poll(0.1)
        clients = {e["client"] for e in _events(log_file)}
    consumer.close()
    assert len(clients) == 3, clients  # the admin client is a producer to librdkafka
    err = capfd.readouterr().err
    assert "%3|" not in err and "FAIL" not in err, err[:300]
    assert all(e["event"] == "kafka" and dead in e["message"] for e in _events(log_file))


class _Surfacing:
    """A log stream whose write meets the SystemError CPython raises when Python code runs
    while a C callback's exception is pending."""

    def write(self, text: str) -> int:
        raise SystemError("<built-in function monotonic> returned a result with an exception set")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_a_pending_client_error_is_not_swallowed_by_the_log(log_file: Path) -> None:
    """Issue 26 item 23: with librdkafka's lines routed through Python logging, the log line
    after a fatal error (a fenced producer) ran while that error was still pending; the log
    handler caught the SystemError it surfaced as, and the worker's flush() then failed with
    "returned NULL without setting an exception" (exit 70) instead of raising the fatal error
    it renews the producer on. A SystemError now passes through the handler."""
    configure_logging(LogSettings(level="INFO", format="json"), _Surfacing())
    with pytest.raises(SystemError, match="exception set"):
        kafka_logger().handle(_rdkafka_record("TXNERR", "Fatal transaction error"))
    with pytest.raises(SystemError):
        logging.getLogger("my.app").error("any other record too")
