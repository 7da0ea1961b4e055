"""Stripe's webhook: verify, store each event id once, hand the event to a service.

The event is read by `billing.stripe_events` before anything acts on it. One
that cannot be read is stored with its problem and acknowledged: Stripe would
redeliver it for days and it would fail the same way each time. It moves no
money; the order it names, if any, is flagged for an admin instead.
"""

import logging

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing.models import RechargeOrder, StripeEvent
from billing.recharge import (
    order_dispute_close,
    order_dispute_open,
    order_flag,
    order_mark_paid,
    order_mark_unsuccessful,
    order_note,
    order_refunds_record,
)
from billing.stripe_events import (
    Charge,
    CheckoutSession,
    Dispute,
    Event,
    MalformedEvent,
    OrderReference,
    event_parse,
)

logger = logging.getLogger(__name__)

Status = RechargeOrder.Status


def _order_for_session(session: CheckoutSession) -> RechargeOrder | None:
    orders = RechargeOrder.objects.all()
    if session.order_number:
        order = orders.filter(number=session.order_number).first()
        if order is not None:
            return order
    return orders.filter(stripe_session_id=session.id).first()


def _checkout_event(kind: str, session: CheckoutSession) -> None:
    order = _order_for_session(session)
    if order is None:
        logger.warning("Stripe %s for an unknown order (session %s)", kind, session.id)
        return
    if kind == "checkout.session.completed":
        if session.payment_status == "paid":
            order_mark_paid(order_id=order.pk, payment=session.payment)
        else:
            order_note(
                order_id=order.pk,
                kind="awaiting_payment",
                message="Checkout completed; the payment is still processing.",
            )
    elif kind == "checkout.session.async_payment_succeeded":
        order_mark_paid(order_id=order.pk, payment=session.payment)
    elif kind == "checkout.session.async_payment_failed":
        order_mark_unsuccessful(
            order_id=order.pk, status=Status.FAILED, message="The payment failed."
        )
    elif kind == "checkout.session.expired":
        order_mark_unsuccessful(
            order_id=order.pk, status=Status.EXPIRED, message="The checkout expired unpaid."
        )


def _refund_event(charge: Charge) -> None:
    order_refunds_record(
        payment_intent_id=charge.payment_intent_id,
        charge_id=charge.id,
        refunds=list(charge.refunds),
        amount_refunded_minor=charge.amount_refunded_minor,
    )


def stripe_event_receive(payload: bytes) -> bool:
    """Handle one verified body; return False when its event id was already stored."""
    try:
        event = event_parse(payload)
    except MalformedEvent as problem:
        return _malformed_event_record(problem)
    return stripe_event_process(event)


def stripe_event_process(event: Event) -> bool:
    """Handle one verified event; return False when its id was already stored.

    The stored event row and the changes it causes commit together: an event
    that failed half-way is not stored, and Stripe's redelivery tries again.
    """
    with transaction.atomic():
        stored, created = StripeEvent.objects.get_or_create(
            event_id=event.id, defaults={"type": event.type, "livemode": event.livemode}
        )
        if not created:
            return False
        data = event.data
        if isinstance(data, CheckoutSession):
            _checkout_event(event.type, data)
        elif isinstance(data, Charge):
            _refund_event(data)
        elif isinstance(data, Dispute):
            if event.type == "charge.dispute.created":
                order_dispute_open(dispute=data)
            else:
                order_dispute_close(dispute=data)
        stored.processed_at = timezone.now()
        stored.save(update_fields=["processed_at"])
    return True


def _order_named(reference: OrderReference) -> RechargeOrder | None:
    """Return the order a malformed event names, by whichever reference resolves."""
    if not reference:
        return None
    match = Q(pk__in=[])
    if reference.number:
        match |= Q(number=reference.number)
    if reference.session_id:
        match |= Q(stripe_session_id=reference.session_id)
    if reference.payment_intent_id:
        match |= Q(stripe_payment_intent_id=reference.payment_intent_id)
    if reference.charge_id:
        match |= Q(stripe_charge_id=reference.charge_id)
    return RechargeOrder.objects.filter(match).order_by("pk").first()


def _malformed_event_record(problem: MalformedEvent) -> bool:
    """Store an event that cannot be read, with its problem; flag the order it names.

    Nothing is credited or debited: an admin reads the event in Stripe's dashboard
    and acts by hand. Stored once per event id, like every event.
    """
    with transaction.atomic():
        _stored, created = StripeEvent.objects.get_or_create(
            event_id=problem.event_id,
            defaults={
                "type": problem.type,
                "livemode": problem.livemode,
                "problem": str(problem),
                "processed_at": timezone.now(),
            },
        )
        if not created:
            return False
        order = _order_named(problem.reference)
        if order is not None:
            order_flag(
                order_id=order.pk,
                kind="unreadable_event",
                message=f"Stripe event {problem.event_id} ({problem.type or 'no type'}) "
                f"could not be read: {problem} Nothing was credited or debited; check "
                "the payment in Stripe's dashboard and act by hand.",
            )
    logger.warning(
        "Stripe event %s (%s) stored without processing: %s",
        problem.event_id,
        problem.type or "no type",
        problem,
    )
    return True
