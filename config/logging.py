"""structlog set-up: JSON lines in production, readable console output on a terminal. The
standard library's logging (a handler's, librdkafka's through kafka_logger) and, in the worker,
print come out on the same log."""

from __future__ import annotations

import atexit
import contextvars
import io
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Collection, MutableMapping
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any

import structlog

from jobstream.config.settings import LogSettings

_buffered: Any = None  # the worker's buffered log stream, flushed by flush_logs()


def configure_logging(
    log: LogSettings, stream: Any = None, buffered: bool = False, capture_print: bool = False
) -> None:
    """`buffered`: for the worker's hot path, where one write and flush per log line was half
    of the per-job CPU; the poll loop calls flush_logs() every few milliseconds instead.
    `capture_print`: when the log is JSON, each line printed to stdout becomes an INFO event
    (logger `print`), so a handler's print cannot break the log."""
    global _buffered
    stream = stream or sys.stderr
    level = logging.getLevelName(log.level)
    use_console = log.format == "console" or (log.format == "auto" and stream.isatty())
    processors: list[Any] = (
        [
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(),
        ]
        if use_console
        else [json_line]
    )
    out = stream
    if buffered:
        out = _buffered = _LockedBuffer(stream.fileno())
        atexit.register(flush_logs)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=(
            structlog.WriteLoggerFactory(file=out)
            if buffered
            else structlog.PrintLoggerFactory(file=out)
        ),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ToStructlog)]:
        root.removeHandler(handler)
    root.addHandler(_ToStructlog())
    root.setLevel(level)
    if capture_print and not use_console:
        sys.stdout = _PrintToLog()


_encode = json.JSONEncoder(default=repr).encode
_second: tuple[int, str] = (0, "")


def json_line(logger: Any, level: str, event: MutableMapping[str, Any]) -> str:
    """merge_contextvars + add_log_level + an ISO UTC TimeStamper + format_exc_info +
    JSONRenderer as one processor, with the date part made once a second: the chain was
    11 us of the worker's three lines per job, this is about 8."""
    event = structlog.contextvars.merge_contextvars(logger, level, event)
    event["level"] = level
    event["timestamp"] = _timestamp()
    if "exc_info" in event:
        event = structlog.processors.format_exc_info(logger, level, event)
    return _encode(event)


def _timestamp() -> str:
    """Now as ISO UTC with microseconds, the date part made once a second."""
    global _second
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((now - whole) * 1e6):06d}Z"


def json_value(value: Any) -> str:
    """One value as json_line encodes it (the C string escaper for the common types)."""
    kind = type(value)
    if kind is str:
        return _json_str(value)
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    if kind is float and value - value == 0.0:  # finite (json writes NaN, Infinity)
        return float.__repr__(value)
    return _encode(value)


def json_pairs(fields: Any) -> str:
    """`"key": value, ...` of a mapping or of (key, value) pairs, as json_line writes them."""
    items = fields.items() if hasattr(fields, "items") else fields
    return ", ".join(f"{_json_str(k)}: {json_value(v)}" for k, v in items)


def _structlog_contextvars_bound() -> bool:
    return any(var.name.startswith(_CTX_PREFIX) for var in contextvars.copy_context())


_CTX_PREFIX = structlog.contextvars.STRUCTLOG_KEY_PREFIX


class JsonLines:
    """The worker's per-job lines without structlog's per-call work (a context copy, a dict
    update, the processor chain, two locks): the same text json_line writes for
    `log.<level>(event, **fields)`, made in one string from pre-encoded pairs (json_pairs) and
    appended to the buffered stream. `usable` is False (callers log the usual way) unless `log`
    is a bound logger of configure_logging's buffered JSON set-up whose bound keys are not
    among `keys`; a line is written the usual way while structlog contextvars are bound."""

    def __init__(self, log: Any, keys: Collection[str]) -> None:
        self.log = log
        context = getattr(log, "_context", None)
        out = getattr(getattr(log, "_logger", None), "_file", None)
        self.usable = bool(
            _buffered is not None
            and out is _buffered
            and list(getattr(log, "_processors", ())) == [json_line]
            and isinstance(context, dict)
            and not set(context) & {*keys, "event", "level", "timestamp"}
        )
        self._out = _buffered
        bound = json_pairs(context or {})
        self._prefix = "{" + (f"{bound}, " if bound else "")
        is_enabled = getattr(log, "is_enabled_for", None)
        self.enabled = {
            name: bool(is_enabled(getattr(logging, name.upper()))) if is_enabled else True
            for name in ("debug", "info", "warning", "error")
        }

    def write(self, level: str, event: str, pairs: str) -> bool:
        """Write one line (pairs: json_pairs of its fields, in order). False when it was not
        written (not usable, or contextvars bound): the caller logs it the usual way."""
        if not self.usable or _structlog_contextvars_bound():
            return False
        if self.enabled[level]:
            self._out.write(
                f'{self._prefix}{pairs}, "event": {_json_str(event)}, "level": "{level}", '
                f'"timestamp": "{_timestamp()}"}}\n'
            )
        return True


class _LockedBuffer:
    """A buffered text stream on a file descriptor that handler threads may write to while the
    poll thread flushes it."""

    def __init__(self, fd: int) -> None:
        raw = open(fd, "wb", buffering=1 << 16, closefd=False)  # noqa: SIM115
        self._text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            return self._text.write(text)

    def flush(self) -> None:
        """Nothing: structlog's WriteLogger flushes after every line, which made each line a
        write(2) of its own (a tenth of the worker's CPU at half its maximum rate)."""

    def drain(self) -> None:
        with self._lock:
            self._text.flush()

    def isatty(self) -> bool:
        return False


def flush_logs() -> None:
    if _buffered is not None:
        _buffered.drain()


def get_logger(name: str = "jobstream", **bound: Any) -> Any:
    # Lazy: a module-level logger picks up configure_logging even when made before it.
    return structlog.get_logger(name, **bound)


# -- the standard library's logging -------------------------------------------------------------

_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)


class _ToStructlog(logging.Handler):
    """The root logger's handler: a standard-library record becomes an event of this log
    (event = the message, plus its logger's name), filtered by the configured level."""

    def __init__(self) -> None:
        super().__init__()
        self._log = structlog.get_logger("stdlib")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = dict(getattr(record, "js_event", None) or {"event": record.getMessage()})
            fields["logger"] = record.name
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            level = max((n for n in _LEVELS if n <= record.levelno), default=logging.DEBUG)
            self._log.log(level, fields.pop("event"), **fields)
        except SystemError:
            # What a librdkafka log line meets while an earlier callback's exception (a fatal
            # error) is still pending: swallowed here, the client call would lose that error
            # and fail with "returned NULL without setting an exception".
            raise
        except Exception:
            self.handleError(record)


class _PrintToLog(io.TextIOBase):
    """sys.stdout of a process whose log is JSON: a printed line becomes an event. Lines are
    collected per thread, so handlers printing at once do not mix their words."""

    def __init__(self) -> None:
        self._pending = threading.local()
        self._log = logging.getLogger("print")

    def write(self, text: str) -> int:
        pending = getattr(self._pending, "text", "") + text
        *lines, self._pending.text = pending.split("\n")
        for line in lines:
            self._log.info(line)
        return len(text)

    def flush(self) -> None:
        pending = getattr(self._pending, "text", "")
        if pending:
            self._pending.text = ""
            self._log.info(pending)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False


# -- librdkafka -------------------------------------------------------------------------------


class LogThrottle(logging.Filter):
    """Rate limit for librdkafka's lines, per facility (FAIL, GETPID, ...): `burst` at once,
    then one every `every_s`; the first line after a pause counts the ones dropped. A broker
    outage made 810 FAIL lines in three minutes. It also gives the record this log's shape:
    a `kafka` event with facility, client and message."""

    def __init__(
        self, burst: int = 5, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst, self.every_s, self._clock = burst, every_s, clock
        self._state: dict[str, tuple[float, float, int]] = {}  # tokens, when, dropped
        self._lock = threading.Lock()  # clients are polled from several threads

    def _allow(self, key: str) -> int | None:
        """None: drop the line; else how many lines of this key were dropped before it."""
        with self._lock:
            now = self._clock()
            if key not in self._state and len(self._state) >= 256:
                key = "*"  # facilities are a short list; never grow without bound
            tokens, then, dropped = self._state.get(key, (float(self.burst), now, 0))
            tokens = min(float(self.burst), tokens + (now - then) / self.every_s)
            if tokens < 1:
                self._state[key] = (tokens, now, dropped + 1)
                return None
            self._state[key] = (tokens - 1, now, 0)
            return dropped

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 3:  # confluent-kafka: facility, client, text
            facility, client, text = (str(a) for a in args)
        else:
            facility, client, text = "", "", record.getMessage()
        dropped = self._allow(facility)
        if dropped is None:
            return False
        event: dict[str, Any] = {
            "event": "kafka", "facility": facility, "client": client, "message": text
        }
        record.msg, record.args = "kafka %s [%s] %s", (facility, client, text)
        if dropped:
            event["suppressed"] = dropped
            record.msg += f" ({dropped} like it suppressed)"
        record.js_event = event
        return True


_KAFKA = logging.getLogger("jobstream.kafka")
_KAFKA.addFilter(LogThrottle())


def kafka_logger() -> logging.Logger:
    """The logger of every librdkafka client (client_config sets it): its lines become
    `kafka` events of this log, or, where jobstream did not configure logging (a library
    user's process), records the application's logging decides about."""
    return _KAFKA
