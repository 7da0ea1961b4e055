"""The only module that talks to Stripe, through the real `stripe` library.

Never call these inside a database transaction: a slow or failing Stripe must
not hold row locks. `STRIPE_API_BASE` points the library at another host (the
fake Stripe API of the tests).
"""

import json
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings
from django.utils.translation import gettext

from billing.models import RechargeOrder


class PaymentUnavailable(Exception):
    """Stripe is not configured or did not answer; the message is for a person."""


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str
    payment_status: str
    status: str
    amount_total: int | None
    currency: str
    livemode: bool
    payment_intent: str


def payments_enabled() -> bool:
    return bool(settings.STRIPE_SECRET_KEY and settings.STRIPE_WEBHOOK_SECRET)


def livemode() -> bool:
    return settings.STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_"))


def _client() -> stripe.StripeClient:
    if not payments_enabled():
        raise PaymentUnavailable(gettext("Online payment is not configured."))
    base = settings.STRIPE_API_BASE or stripe.DEFAULT_API_BASE
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": base},
        # Retries resend the same idempotency key: Stripe answers with the first session.
        max_network_retries=2,
        http_client=stripe.new_default_http_client(timeout=20),
    )


def _session(data: Any) -> CheckoutSession:
    intent = data.get("payment_intent") or ""
    if not isinstance(intent, str):
        intent = intent.get("id", "")
    return CheckoutSession(
        id=data["id"],
        url=data.get("url") or "",
        payment_status=data.get("payment_status") or "",
        status=data.get("status") or "",
        amount_total=data.get("amount_total"),
        currency=(data.get("currency") or "").lower(),
        livemode=bool(data.get("livemode")),
        payment_intent=intent,
    )


def checkout_session_create(
    *, order: RechargeOrder, success_url: str, cancel_url: str, email: str
) -> CheckoutSession:
    """Open a hosted Checkout for exactly `order.amount_minor`; the same order -> the same session.

    The idempotency key is the order number, so a retried request (a double click,
    a network retry) cannot open a second payment for the order.
    """
    params: dict[str, Any] = {
        "mode": "payment",
        "client_reference_id": order.number,
        "customer_email": email,
        "success_url": success_url,
        "cancel_url": cancel_url,
        "metadata": {"order_number": order.number},
        "payment_intent_data": {"metadata": {"order_number": order.number}},
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": order.currency,
                    "unit_amount": order.amount_minor,
                    "product_data": {"name": f"Comet credit, order {order.number}"},
                },
            }
        ],
    }
    try:
        session = _client().v1.checkout.sessions.create(
            params,  # type: ignore[arg-type]
            {"idempotency_key": f"order-{order.number}"},
        )
    except stripe.StripeError as error:
        raise PaymentUnavailable(
            gettext("The payment provider did not open a checkout; nothing was charged. Try again.")
        ) from error
    return _session(json.loads(str(session)))


def checkout_session_retrieve(session_id: str) -> CheckoutSession:
    try:
        session = _client().v1.checkout.sessions.retrieve(session_id)
    except stripe.StripeError as error:
        raise PaymentUnavailable(gettext("The payment provider did not answer.")) from error
    return _session(json.loads(str(session)))
