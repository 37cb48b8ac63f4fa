"""The nightly batch reconciliation job: a recurring schedule whose cron comes from the settings.

    # jobstream.yaml
    schedules:
      billing.nightly:
        job_type: billing.reconcile
        cron: "30 2 * * *"            # 02:30 every night ...
        timezone: Europe/Berlin        # ... Berlin time (DST handled, docs/scheduling.md)
        payload: {scope: all, days_back: 1}
        catch_up: latest               # after downtime, run the newest missed night once

`jobstream worker --app examples.demo_jobs` (which imports this module) fires it on the owner
of jobstream.schedules; `make demo` sets a cron of every 2 seconds to show it. The job id of
each firing is `sched:billing.nightly:<slot in UTC>`: a slot runs once, however many workers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jobstream import JobContext, job


def slot_of(job_id: str) -> datetime | None:
    """The slot a scheduled firing stands for (`sched:<name>:<UTC>`); None for a manual one."""
    parts = job_id.split(":", 2)
    if len(parts) != 3 or parts[0] != "sched" or parts[2].startswith("manual:"):
        return None
    return datetime.strptime(parts[2], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@job("billing.reconcile")
def reconcile(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Reconcile the day(s) before the slot: the slot, not the clock, says which day, so a
    catch-up run after downtime reconciles the night it stands for."""
    at = slot_of(ctx.job_id) or datetime.now(UTC)
    day = (at - timedelta(days=int(payload.get("days_back", 1)))).date()
    ctx.progress(0.5, f"reconciling {payload.get('scope', 'all')} for {day}")
    return {"day": day.isoformat(), "scope": payload.get("scope", "all"), "mismatches": 0}
