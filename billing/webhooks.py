"""Stripe's webhook: verify, store each event id once, hand the event to a service."""

import json
import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing.models import RechargeOrder, StripeEvent
from billing.recharge import (
    Dispute,
    Payment,
    Refund,
    order_dispute_close,
    order_dispute_open,
    order_mark_paid,
    order_mark_unsuccessful,
    order_note,
    order_refunds_record,
)

logger = logging.getLogger(__name__)

Status = RechargeOrder.Status


def _order_for_session(session: dict[str, Any]) -> RechargeOrder | None:
    number = (session.get("metadata") or {}).get("order_number") or session.get(
        "client_reference_id"
    )
    orders = RechargeOrder.objects.all()
    if number:
        order = orders.filter(number=number).first()
        if order is not None:
            return order
    return orders.filter(stripe_session_id=session.get("id", "")).first()


def _intent_id(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("id", ""))
    return str(value or "")


def _payment(session: dict[str, Any], source: str) -> Payment:
    return Payment(
        amount_minor=session.get("amount_total"),
        currency=str(session.get("currency") or ""),
        livemode=bool(session.get("livemode")),
        payment_intent_id=_intent_id(session.get("payment_intent")),
        source=source,
    )


def _checkout_event(kind: str, session: dict[str, Any]) -> None:
    order = _order_for_session(session)
    if order is None:
        logger.warning("Stripe %s for an unknown order (session %s)", kind, session.get("id"))
        return
    if kind == "checkout.session.completed":
        if session.get("payment_status") == "paid":
            order_mark_paid(order_id=order.pk, payment=_payment(session, "Stripe webhook"))
        else:
            order_note(
                order_id=order.pk,
                kind="awaiting_payment",
                message="Checkout completed; the payment is still processing.",
            )
    elif kind == "checkout.session.async_payment_succeeded":
        order_mark_paid(order_id=order.pk, payment=_payment(session, "Stripe webhook"))
    elif kind == "checkout.session.async_payment_failed":
        order_mark_unsuccessful(
            order_id=order.pk, status=Status.FAILED, message="The payment failed."
        )
    elif kind == "checkout.session.expired":
        order_mark_unsuccessful(
            order_id=order.pk, status=Status.EXPIRED, message="The checkout expired unpaid."
        )


def _refund_event(charge: dict[str, Any]) -> None:
    refunds = [
        Refund(
            id=str(refund["id"]),
            amount_minor=int(refund["amount"]),
            created=int(refund.get("created") or 0),
        )
        for refund in (charge.get("refunds") or {}).get("data", [])
        if refund.get("status") in (None, "succeeded", "pending")
    ]
    order_refunds_record(
        payment_intent_id=_intent_id(charge.get("payment_intent")),
        charge_id=str(charge.get("id", "")),
        refunds=refunds,
        amount_refunded_minor=int(charge.get("amount_refunded") or 0),
    )


def _dispute(dispute: dict[str, Any]) -> Dispute:
    return Dispute(
        id=str(dispute["id"]),
        amount_minor=int(dispute.get("amount") or 0),
        status=str(dispute.get("status") or ""),
        payment_intent_id=_intent_id(dispute.get("payment_intent")),
        charge_id=_intent_id(dispute.get("charge")),
    )


def stripe_event_parse(payload: bytes) -> dict[str, Any]:
    """Return the event a verified body carries; ValueError if it is not shaped like one."""
    try:
        event = json.loads(payload)
    except ValueError:
        raise ValueError("The body is not JSON.") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise ValueError("The body is not a Stripe event.")
    if not isinstance(event.get("type"), str):
        raise ValueError("The event has no type.")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise ValueError("The event carries no object.")
    return event


def stripe_event_process(event: dict[str, Any]) -> bool:
    """Handle one verified event; return False when its id was already stored.

    The stored event row and the changes it causes commit together: an event
    that failed half-way is not stored, and Stripe's redelivery tries again.
    """
    kind = event["type"]
    obj = event["data"]["object"]
    with transaction.atomic():
        stored, created = StripeEvent.objects.get_or_create(
            event_id=str(event["id"]),
            defaults={"type": kind, "livemode": bool(event.get("livemode"))},
        )
        if not created:
            return False
        if kind.startswith("checkout.session."):
            _checkout_event(kind, obj)
        elif kind == "charge.refunded":
            _refund_event(obj)
        elif kind == "charge.dispute.created":
            order_dispute_open(dispute=_dispute(obj))
        elif kind == "charge.dispute.closed":
            order_dispute_close(dispute=_dispute(obj))
        stored.processed_at = timezone.now()
        stored.save(update_fields=["processed_at"])
    return True
