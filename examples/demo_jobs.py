"""The demo's job module: `jobstream worker --app examples.demo_jobs`."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from examples import reconciliation  # noqa: F401  (registers billing.reconcile)
from jobstream import JobContext, PermanentError, job


@job("orders.confirmation")
def confirm_order(payload: dict[str, Any], ctx: JobContext) -> None:
    if payload["total_cents"] < 0:
        raise PermanentError(f"order {payload['order_id']} has a negative total")
    ctx.log.info("confirmation_sent", order_id=payload["order_id"], currency=payload["currency"])


@job("media.thumbnail")
def thumbnail(payload: dict[str, Any], ctx: JobContext) -> None:
    # Stand-in for image work: deterministic CPU work sized by the target.
    digest = hashlib.sha256(
        f"{payload['source_uri']}:{payload['width']}x{payload['height']}".encode()
    )
    ctx.log.info("thumbnail_rendered", image_id=payload["image_id"], digest=digest.hexdigest()[:12])


@job("reports.generate")
async def generate_report(payload: dict[str, Any], ctx: JobContext) -> None:
    await asyncio.sleep(0.01)  # an async handler awaiting its I/O
    ctx.log.info("report_generated", account_id=payload["account_id"], period=payload["period"])
