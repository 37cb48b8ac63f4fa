"""The console's write actions, each audited with the signed-in user (`via: console`):
replaying selected records, replaying by filter (consumers/ops/replay.py), unmasking one."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, Message

from jobstream.config.settings import Settings
from jobstream.consumers.ops.audit import record_operation
from jobstream.consumers.ops.dlq import DeadLetter, DlqError, Filters, Result
from jobstream.consumers.ops.dlq_reader import QUIET, list_topics, resolve_target
from jobstream.consumers.ops.replay import destination, replay, replay_headers

MAX_SELECTED = 1000  # one form's worth; more is a filtered replay


def who(user: str) -> dict[str, Any]:
    return {"user": user, "via": "console"}


def replay_selected(settings: Settings, job_type: str, records: list[DeadLetter],
                    user: str) -> Result:
    """Republish exactly these dead letters to their main topic (attempt 1, same partition,
    key and job id). Saved replay progress is not moved: it belongs to filtered runs."""
    from jobstream.producers.publisher import Publisher

    if not records:
        raise DlqError("no records selected: tick at least one")
    if len(records) > MAX_SELECTED:
        raise DlqError(f"{len(records)} records selected; at most {MAX_SELECTED} at once "
                       "(use replay by filter)")
    topics = list_topics(settings)
    t = resolve_target(settings, job_type, topics)
    _, dest, _ = destination("origin", t, topics)
    result = Result("replay", t.dlq, dest, matched=len(records))
    failures: list[str] = []
    error: str | None = None

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            result.replayed += 1
        else:
            failures.append(err.str())

    pub = Publisher(settings, producer_config={"logger": QUIET})
    try:
        for dl in records:
            pub.send(dest, dl.key, dl.value, replay_headers(dl.raw_headers, dl.ref),
                     partition=dl.partition, on_delivery=delivered)
            lo, hi = result.covered.get(dl.partition, (dl.offset, dl.offset))
            result.covered[dl.partition] = (min(lo, dl.offset), max(hi, dl.offset))
        left = pub.flush(30)
        if left or failures:
            error = failures[0] if failures else f"{left} records unacknowledged after 30s"
            raise DlqError(f"replay to {dest} failed: {error}")
        return result
    except DlqError:
        raise
    except Exception as e:
        error = str(e) or type(e).__name__
        raise DlqError(f"replay to {dest} failed: {error}") from None
    finally:
        record_operation(settings, result, Filters(),
                         {"to": "origin", "selected": [dl.ref for dl in records], **who(user)},
                         error=error)


def replay_filtered(settings: Settings, job_type: str, filters: Filters, user: str,
                    dry_run: bool = False) -> Result:
    return replay(settings, job_type, filters, "origin", dry_run=dry_run,
                  limit=filters.limit, audit_extra=who(user))


def audit_unmask(settings: Settings, dl: DeadLetter, user: str) -> None:
    """Written before the page shows any PII: a failed write shows none."""
    seen = Result("show", dl.topic, "console", matched=1,
                  covered={dl.partition: (dl.offset, dl.offset)})
    record_operation(settings, seen, Filters(),
                     {"unmask": True, "job_id": dl.job_id, "position": dl.position, **who(user)})
