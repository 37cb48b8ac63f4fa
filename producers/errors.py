"""What the publisher raises, and the checks of its arguments. Every message is one line
naming the job or the argument."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaError

from jobstream.schemas import wire

# Job ids named in a DeliveryError's message per reason; the rest are counted (all are in
# `undelivered`).
_IDS_SHOWN = 5


class PublishError(RuntimeError):
    """A job was not published: the broker did not accept it, or an argument was wrong."""


class InvalidJob(PublishError, ValueError):
    """An argument of publish (key, job id, headers) is wrong; nothing was sent. Also a
    ValueError, which these mistakes raised before."""


class PayloadTooLarge(ValueError):
    """The encoded job is larger than its topic accepts."""


@dataclass(frozen=True)
class Undelivered:
    """A job of publish_async that the broker did not acknowledge."""

    job_id: str
    topic: str
    reason: str  # librdkafka's text, e.g. "Broker: Message size too large"
    error: KafkaError | None = None


class DeliveryError(PublishError):
    """Jobs of publish_async that were not delivered; `undelivered` lists every one of them
    (`others` counts records sent with their own on_delivery callback, told there)."""

    def __init__(self, undelivered: list[Undelivered], others: int = 0, note: str = "") -> None:
        self.undelivered = undelivered
        self.others = others
        grouped: dict[tuple[str, str], list[str]] = {}
        for u in undelivered:
            grouped.setdefault((u.topic, u.reason), []).append(u.job_id)
        parts = []
        for (topic, reason), ids in grouped.items():
            shown = ", ".join(ids[:_IDS_SHOWN])
            more = f" and {len(ids) - _IDS_SHOWN} more" if len(ids) > _IDS_SHOWN else ""
            parts.append(f"to {topic}: {reason}: {shown}{more}")
        n = len(undelivered)
        text = f"{n} job{'s' if n != 1 else ''} not delivered ({'; '.join(parts)})" if n else ""
        if others:
            text += (", and " if text else "") + f"{others} other records not acknowledged"
        super().__init__(text + note)


def user_headers(headers: Mapping[str, str]) -> wire.HeaderList:
    reserved = [k for k in headers if k.startswith("js-") or k == wire.TRACEPARENT]
    if reserved:
        raise InvalidJob(f"headers: {reserved} are reserved by jobstream")
    return wire.encode_headers(headers)


def _shown(value: object) -> str:
    """The input in an error message: its type unless it is a str, and at most ~80 chars."""
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return text if isinstance(value, str) else f"{type(value).__name__} {text}"


def check_key(key: object) -> None:
    # An empty key would put every such job on one partition; None means "the job id".
    if not isinstance(key, str) or not key:
        raise InvalidJob(
            "key: must be a non-empty string (leave it out to key by the job id), "
            f"got {_shown(key)}"
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJob(f"key: not encodable as UTF-8, got {_shown(key)}") from None


def check_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not value or len(value) > 200 or not value.isprintable():
        raise InvalidJob(
            f"{name}: must be a printable string of 1-200 characters, got {_shown(value)}"
        )
