"""One owned partition's state: its offset book, its key queues, and what holds it back."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobstream.consumers.runtime.offsets import PartitionOffsets
from jobstream.consumers.runtime.ordering import KeyQueues
from jobstream.consumers.runtime.types import TP, Job


@dataclass
class PartitionState:
    tp: TP
    job_type: str
    ledger_tp: TP
    is_tier: bool
    gen: int
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    queues: KeyQueues[Job] = field(default_factory=KeyQueues)
    running: int = 0
    gated_until_ms: int = 0  # tier head not due before this
    held: int = 0  # strict-ordering jobs waiting for an in-place retry
    paused: bool = True  # as last told to the consumer

    @property
    def in_flight(self) -> int:
        return self.offsets.in_flight

    def release_hold(self, job: Job) -> None:
        if job.holds_partition:  # a failure retried in place again takes it anew
            job.holds_partition = False
            self.held -= 1
