"""The largest record a topic takes: its max.message.bytes, read once per topic and cached."""

from __future__ import annotations

import threading

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource

from jobstream.config.sections import KafkaSettings
from jobstream.producers.connection import ErrorWatch
from jobstream.producers.errors import PublishError

# librdkafka's default message.max.bytes: a record above it is refused by the producer itself.
PRODUCER_LIMIT = 1_000_000


class RecordLimits:
    """max.message.bytes per topic, capped by the producer's own limit."""

    def __init__(self, kafka: KafkaSettings, errors: ErrorWatch) -> None:
        self._kafka = kafka
        self._errors = errors
        self._limits: dict[str, int] = {}
        self._lock = threading.Lock()

    def max_record_bytes(self, topic: str) -> int:
        limit = self._limits.get(topic)
        if limit is not None:
            return limit
        with self._lock:
            if topic not in self._limits:
                self._limits[topic] = self._describe(topic)
            return self._limits[topic]

    def _describe(self, topic: str) -> int:
        from jobstream.config.kafka import client_config

        admin = AdminClient(client_config(self._kafka, log_level=3, error_cb=self._errors))
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        try:
            configs = admin.describe_configs([res], request_timeout=10)[res].result(timeout=15)
            return min(int(configs["max.message.bytes"].value), PRODUCER_LIMIT)
        except KafkaException as e:
            err = e.args[0] if e.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise PublishError(
                    f"topic {topic} does not exist; create it with `jobstream topics apply`"
                ) from None
            if isinstance(err, KafkaError) and err.code() == KafkaError._TIMED_OUT:
                admin.poll(0)  # serves error_cb: a rejected password is the likely cause
                raise PublishError(
                    f"broker unreachable at {self._kafka.bootstrap_servers}"
                    f"{self._errors.explain()}"
                ) from None
            return PRODUCER_LIMIT  # e.g. no describe rights: fall back to the producer's limit
        except (KeyError, ValueError):
            return PRODUCER_LIMIT
