"""Reading T.scheduled records back by offset, shortly before they are due: the pending index
keeps only offsets, the records (payloads) stay in Kafka."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings

# Past this many records between two wanted offsets, seek instead of reading through.
_SEEK_GAP = 2000


class OffsetReader:
    """One assign-only consumer (it never joins a group or commits)."""

    def __init__(self, settings: Settings, group: str) -> None:
        self.consumer = Consumer(
            client_config(
                settings.kafka,
                **{
                    "group.id": group,
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 50,
                },
            )
        )

    def read(self, topic: str, partition: int, offsets: list[int], timeout: float = 5.0
             ) -> tuple[dict[int, Message], list[int]]:
        """({offset: record} found, offsets not read in time). An offset passed over without
        its record was compacted away (a later record of its id exists): neither found nor
        left, it is simply gone."""
        wanted = sorted(set(offsets))
        want = set(wanted)
        found: dict[int, Message] = {}
        i = 0
        deadline = time.monotonic() + timeout
        at_end = False
        while i < len(wanted) and not at_end and time.monotonic() < deadline:
            start = wanted[i]
            self.consumer.assign([TopicPartition(topic, partition, start)])
            last = start - 1
            while i < len(wanted) and time.monotonic() < deadline:
                msgs = self.consumer.consume(500, timeout=0.2)
                eof = False
                for m in msgs:
                    if m.topic() != topic or m.partition() != partition:
                        continue
                    err = m.error()
                    if err is not None:
                        eof = eof or err.code() == KafkaError._PARTITION_EOF
                        continue
                    off = m.offset()
                    if off is None or off < start:
                        continue
                    last = max(last, off)
                    if off in want:
                        found[off] = m
                while i < len(wanted) and wanted[i] <= last:
                    i += 1
                if eof and i < len(wanted) and wanted[i] > last:
                    at_end = True  # read to the end: what is left is tried again later
                    break
                if i < len(wanted) and wanted[i] - last > _SEEK_GAP:
                    break  # seek to the next wanted offset
        left = [o for o in wanted[i:] if o not in found]
        return found, left

    def close(self) -> None:
        self.consumer.close()
