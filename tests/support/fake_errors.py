"""Errors as librdkafka reports them (codes, flags and the wording observed against a real
broker), built from the real confluent_kafka classes so code under test needs no change."""

from __future__ import annotations

from typing import Any, NoReturn

from confluent_kafka import KafkaError, KafkaException

FENCED_TEXT = "This instance has been fenced by a newer instance"
# What a broker error in a transaction turns into (observed: the produce request's error).
ABORTABLE_SUFFIX = ": current transaction must be aborted"
FENCING_CODES = frozenset(
    {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.FENCED_INSTANCE_ID,
    }
)


def text(code: int) -> str:
    """librdkafka's own wording for an error code, e.g. "Broker: Message size too large"."""
    return str(KafkaError(code).str())


def error(
    code: int,
    reason: str | None = None,
    *,
    fatal: bool = False,
    retriable: bool = False,
    txn_requires_abort: bool = False,
) -> KafkaError:
    return KafkaError(
        code,
        reason if reason is not None else text(code),
        fatal=fatal,
        retriable=retriable,
        txn_requires_abort=txn_requires_abort,
    )


def fail(
    code: int,
    reason: str | None = None,
    *,
    fatal: bool = False,
    retriable: bool = False,
    txn_requires_abort: bool = False,
) -> NoReturn:
    raise KafkaException(
        error(
            code, reason, fatal=fatal, retriable=retriable, txn_requires_abort=txn_requires_abort
        )
    )


def state_error(state: str) -> KafkaError:
    """A transactional call in the wrong state, e.g. commit_transaction with none open."""
    return error(KafkaError._STATE, f"Operation not valid in state {state}")


def fenced(what: str) -> KafkaError:
    """The fatal error of a producer whose transactional.id a newer instance took over."""
    return error(KafkaError._FENCED, f"{what}: Local: {FENCED_TEXT}", fatal=True)


def produce_error(code: int) -> KafkaError:
    """produce() refusing a record at once (raised, not reported)."""
    return error(code, f"Unable to produce message: {text(code)}")


def check_consumer_conf(conf: dict[str, Any]) -> None:
    """What the real Consumer constructor refuses (observed wording)."""
    if not conf.get("group.id"):
        raise ValueError("Failed to create consumer: group.id must be set")
    if conf.get("group.protocol") == "consumer":
        for key in ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy"):
            if key in conf:
                fail(
                    KafkaError._INVALID_ARG,
                    f"Failed to create consumer: `{key}` is not supported for "
                    "`group.protocol=consumer`",
                )
