"""Reading T.scheduled records back by offset, shortly before they are due: the pending index
keeps only offsets, the records (payloads) stay in Kafka."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Any

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


class ReadAhead(threading.Thread):
    """The OffsetReader on a thread of its own: a read back takes fetch round trips (a seek
    each), and done on the scheduler's thread it held every partition's dispatch up behind it.
    The scheduler submits (token, topic, partition, offsets) and collects (token, found, left);
    the pending index stays the scheduler thread's alone."""

    def __init__(self, settings: Settings, group: str) -> None:
        super().__init__(name="jobstream-scheduler-reader", daemon=True)
        self._reader = OffsetReader(settings, group)
        self._todo: queue.Queue[tuple[Any, str, int, list[int]] | None] = queue.Queue()
        self._done: queue.Queue[tuple[Any, dict[int, Message], list[int]]] = queue.Queue()
        self.error: BaseException | None = None

    def submit(self, token: Any, topic: str, partition: int, offsets: list[int]) -> None:
        self._todo.put((token, topic, partition, offsets))

    def results(self) -> list[tuple[Any, dict[int, Message], list[int]]]:
        """The reads finished since the last call; raises what stopped the reader, if any."""
        if self.error is not None:
            raise self.error
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def run(self) -> None:
        try:
            while (item := self._todo.get()) is not None:
                token, topic, partition, offsets = item
                found, left = self._reader.read(topic, partition, offsets)
                self._done.put((token, found, left))
        except BaseException as e:
            self.error = e
        finally:
            with contextlib.suppress(Exception):
                self._reader.close()

    def stop(self, timeout: float = 10.0) -> None:
        self._todo.put(None)
        if self.is_alive():
            self.join(timeout)
