"""A batch member's final outcome, written to jobstream.batches in the same interval as the
outcome itself (docs/workflows.md): in the member's transaction, or (at least once) before its
completion is recorded, like a child job (consumers/runtime/children.py). A member whose
attempt opened a batch of its own (ctx.batch) is final when that inner batch closes: its owner
writes the member's record then."""

from __future__ import annotations

import time

from jobstream.config.topics import BATCHES_PARTITIONS, BATCHES_TOPIC
from jobstream.consumers.runtime.children import ChildRecord
from jobstream.consumers.runtime.types import Job
from jobstream.schemas import batch_record as br
from jobstream.schemas import wire

CANCELLED = br.CANCELLED


def opened_batch(job: Job) -> bool:
    """This attempt opened a nested batch (ctx.batch in a member's handler)."""
    kids = job.children
    return kids is not None and bool(getattr(kids, "nested", False))


def outcome_record(job: Job, outcome: str, nested: bool = False) -> ChildRecord | None:
    """The member record for a job of a batch; None for a job of no batch, or a member whose
    outcome its nested batch gives."""
    bid = job.headers.get(wire.BATCH)
    if not bid or nested:
        return None
    return ChildRecord(job.job_id, "", BATCHES_TOPIC, br.member_key(bid, job.job_id),
                       br.encode_member(outcome, int(time.time() * 1000)), [],
                       br.partition_of(bid, BATCHES_PARTITIONS), None, kind="batch")
