"""An order-fulfilment pipeline (docs/workflows.md): `jobstream worker --app
examples.fulfilment.jobs` with `schema_dirs: [examples/fulfilment/schemas]`.

shop.place_order starts the chain reserve_stock -> charge_payment -> ship_order and enqueues
the confirmation e-mail as its child: all of it is written with place_order's success, or
not at all. Each step returns the fields the next one needs; ship_order enqueues the
"shipped" e-mail. A payment the provider declines dead-letters charge_payment: the chain
stops there (nothing is shipped) and `jobstream jobs show` says so.
"""

from __future__ import annotations

import hashlib
from typing import Any

from jobstream import JobContext, PermanentError, job

# Stand-ins for the warehouse, the payment provider and the carrier: ids derived from the
# order, so a re-run (a retry, a redo after a crash) gets the same answer, as an idempotent
# API called with the order id as its idempotency key would give.


def _ref(kind: str, order_id: str) -> str:
    return f"{kind}-{hashlib.sha256(f'{kind}/{order_id}'.encode()).hexdigest()[:10]}"


@job("shop.place_order")
def place_order(payload: dict[str, Any], ctx: JobContext) -> None:
    order = payload["order_id"]
    ctx.chain(
        ("shop.reserve_stock", {"order_id": order, "skus": payload["skus"]}),
        ("shop.charge_payment", {"order_id": order, "amount_cents": payload["amount_cents"]}),
        ("shop.ship_order", {"order_id": order, "email": payload["email"]}),
        key=order, name="fulfilment",
    )
    ctx.enqueue("shop.send_email", {"order_id": order, "email": payload["email"],
                                    "template": "confirmation"}, key=order, name="confirmation")


@job("shop.reserve_stock")
def reserve_stock(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    if not payload["skus"]:
        raise PermanentError(f"order {payload['order_id']} has no items")
    return {"reservation_id": _ref("res", payload["order_id"])}


@job("shop.charge_payment")
def charge_payment(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    if payload["amount_cents"] <= 0:
        raise PermanentError(f"payment declined: amount {payload['amount_cents']}")
    # Only the previous step's result reaches the next step: hand the reservation on too.
    return {"payment_id": _ref("pay", payload["order_id"]),
            "reservation_id": payload["reservation_id"]}


@job("shop.ship_order")
def ship_order(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    tracking = _ref("trk", payload["order_id"])
    ctx.enqueue("shop.send_email", {"order_id": payload["order_id"], "email": payload["email"],
                                    "template": "shipped"}, key=payload["order_id"],
                name="shipped")
    return {"tracking": tracking, "payment_id": payload["payment_id"]}


@job("shop.send_email")
def send_email(payload: dict[str, Any], ctx: JobContext) -> None:
    ctx.log.info("email_sent", order_id=payload["order_id"], template=payload["template"])


def publish_order(pub: Any, order_id: str, email: str, skus: list[str], amount_cents: int
                  ) -> str:
    """What the shop's web service does when an order is placed."""
    return str(pub.publish("shop.place_order", {"order_id": order_id, "email": email,
                                                "skus": skus, "amount_cents": amount_cents},
                           key=order_id))

