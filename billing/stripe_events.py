"""Stripe's webhook events read into typed values, their shape checked in one place.

A body whose signature verifies comes from Stripe, but nothing in it is used
before its shape is checked here: a refund without an id, an amount sent as a
string, a float or twelve digits too many, metadata that is not an object, an
event without its object or with an object of another type. `event_parse`
returns an `Event` whose `data` is a `CheckoutSession`, a `Charge` or a
`Dispute` (or None for the types Comet does not act on), or raises
`MalformedEvent`, whose message names the first problem for a person and which
carries what the webhook needs to store the event anyway and to find the order
it names.
"""

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from billing.recharge import Dispute, Payment, Refund

# Twelve digits: more than any charge Stripe accepts in any currency, and far
# inside a BigIntegerField once turned into micro-USD shares.
MAX_AMOUNT_MINOR = 10**12 - 1
# Stripe's ids are about 30 characters. The limit keeps every id inside the
# order's columns and the ledger's idempotency keys (`refund:<id>`, 200 at most).
MAX_ID_LENGTH = 100
# StripeEvent.event_id and .type hold this much.
MAX_EVENT_ID_LENGTH = 255
MAX_EVENT_TYPE_LENGTH = 100

CHECKOUT_TYPES = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
)
REFUND_TYPES = frozenset({"charge.refunded"})
DISPUTE_TYPES = frozenset({"charge.dispute.created", "charge.dispute.closed"})
# Refunds that count against a charge; failed and canceled ones gave nothing back.
COUNTED_REFUND_STATUSES = (None, "succeeded", "pending")


@dataclass(frozen=True)
class OrderReference:
    """What an event says about the order it concerns, each part possibly empty."""

    number: str = ""
    session_id: str = ""
    payment_intent_id: str = ""
    charge_id: str = ""

    def __bool__(self) -> bool:
        return any((self.number, self.session_id, self.payment_intent_id, self.charge_id))


class MalformedEvent(Exception):
    """A verified event whose shape Comet cannot act on; the message is for a person.

    `event_id` is Stripe's id, or `unreadable:<SHA-256 of the body>` when the body
    has no usable id, so a redelivery of the same body is recognised either way.
    """

    def __init__(
        self,
        message: str,
        *,
        event_id: str = "",
        type: str = "",
        livemode: bool = False,
        reference: OrderReference | None = None,
    ) -> None:
        super().__init__(message)
        self.event_id = event_id
        self.type = type
        self.livemode = livemode
        self.reference = reference or OrderReference()


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    # From the session's metadata, else its client_reference_id; may be empty.
    order_number: str
    payment_status: str
    payment: Payment


@dataclass(frozen=True)
class Charge:
    id: str
    payment_intent_id: str
    amount_refunded_minor: int
    # Only the refunds that count (see COUNTED_REFUND_STATUSES); empty when the
    # event's API version leaves the list out.
    refunds: tuple[Refund, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    livemode: bool
    # None for the event types Comet does not act on.
    data: CheckoutSession | Charge | Dispute | None


def event_parse(payload: bytes) -> Event:
    """Return the event a verified body carries; raise MalformedEvent naming what is wrong."""
    try:
        raw = json.loads(payload)
    except ValueError:
        raise _unreadable(payload, "The body is not JSON.") from None
    if not isinstance(raw, dict):
        raise _unreadable(payload, f"The body should be a JSON object, but is {_shown(raw)}.")
    try:
        return _event(raw)
    except MalformedEvent as problem:
        event_id = raw.get("id")
        kind = raw.get("type")
        livemode = raw.get("livemode")
        problem.event_id = (
            event_id if _is_short_string(event_id, MAX_EVENT_ID_LENGTH) else _digest_id(payload)
        )
        problem.type = kind[:MAX_EVENT_TYPE_LENGTH] if isinstance(kind, str) else ""
        problem.livemode = livemode if isinstance(livemode, bool) else False
        problem.reference = _reference(raw)
        raise


def _event(raw: dict[str, Any]) -> Event:
    event_id = _string(raw, "id", "id", max_length=MAX_EVENT_ID_LENGTH)
    kind = _string(raw, "type", "type", max_length=MAX_EVENT_TYPE_LENGTH)
    livemode = _boolean(raw, "livemode", "livemode")
    data = _object(raw, "data", "data")
    obj = _object(data, "object", "data.object")
    where = "data.object"
    parsed: CheckoutSession | Charge | Dispute | None = None
    if kind in CHECKOUT_TYPES:
        parsed = _checkout_session(obj, where)
    elif kind in REFUND_TYPES:
        parsed = _charge(obj, where)
    elif kind in DISPUTE_TYPES:
        parsed = _dispute(obj, where)
    return Event(id=event_id, type=kind, livemode=livemode, data=parsed)


def _checkout_session(obj: dict[str, Any], where: str) -> CheckoutSession:
    _object_type(obj, where, "checkout.session")
    metadata = _object(obj, "metadata", f"{where}.metadata", required=False)
    number = _string(
        metadata, "order_number", f"{where}.metadata.order_number", required=False
    ) or _string(obj, "client_reference_id", f"{where}.client_reference_id", required=False)
    return CheckoutSession(
        id=_stripe_id(obj, "id", f"{where}.id"),
        order_number=number,
        payment_status=_string(obj, "payment_status", f"{where}.payment_status"),
        payment=Payment(
            # Stripe documents both as nullable; a null one cannot match the order.
            amount_minor=_amount(obj, "amount_total", f"{where}.amount_total", required=False),
            currency=_string(obj, "currency", f"{where}.currency", required=False),
            livemode=_boolean(obj, "livemode", f"{where}.livemode"),
            payment_intent_id=_stripe_id(
                obj, "payment_intent", f"{where}.payment_intent", required=False
            ),
            source="Stripe webhook",
        ),
    )


def _charge(obj: dict[str, Any], where: str) -> Charge:
    _object_type(obj, where, "charge")
    refunds: list[Refund] = []
    listing = _object(obj, "refunds", f"{where}.refunds", required=False)
    if listing:
        items = listing.get("data")
        if not isinstance(items, list):
            raise MalformedEvent(_expected(f"{where}.refunds.data", "a list", items))
        for index, item in enumerate(items):
            place = f"{where}.refunds.data[{index}]"
            if not isinstance(item, dict):
                raise MalformedEvent(_expected(place, "an object", item))
            refund = Refund(
                id=_stripe_id(item, "id", f"{place}.id"),
                amount_minor=_required_amount(item, "amount", f"{place}.amount"),
                created=_count(item, "created", f"{place}.created"),
            )
            status = _string(item, "status", f"{place}.status", required=False) or None
            if status in COUNTED_REFUND_STATUSES:
                refunds.append(refund)
    return Charge(
        id=_stripe_id(obj, "id", f"{where}.id"),
        payment_intent_id=_stripe_id(
            obj, "payment_intent", f"{where}.payment_intent", required=False
        ),
        amount_refunded_minor=_required_amount(obj, "amount_refunded", f"{where}.amount_refunded"),
        refunds=tuple(refunds),
    )


def _dispute(obj: dict[str, Any], where: str) -> Dispute:
    _object_type(obj, where, "dispute")
    return Dispute(
        id=_stripe_id(obj, "id", f"{where}.id"),
        amount_minor=_required_amount(obj, "amount", f"{where}.amount"),
        status=_string(obj, "status", f"{where}.status"),
        payment_intent_id=_stripe_id(
            obj, "payment_intent", f"{where}.payment_intent", required=False
        ),
        # Every dispute is about a charge: without it the dispute cannot be matched
        # to what was paid, whatever else the event says.
        charge_id=_stripe_id(obj, "charge", f"{where}.charge"),
    )


# --- Fields ---------------------------------------------------------------------


def _shown(value: Any) -> str:
    """Describe a JSON value briefly, for a problem message (never more than ~40 characters)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value)
    if len(text) > 40:
        text = text[:37] + "..."
    if isinstance(value, str):
        return f"the string {text}"
    if isinstance(value, bool):
        return f"the boolean {text}"
    if isinstance(value, float):
        return f"the decimal number {text}"
    return f"the number {text}"


def _expected(where: str, expected: str, value: Any) -> str:
    return f"{where} should be {expected}, but is {_shown(value)}."


def _missing(where: str) -> MalformedEvent:
    return MalformedEvent(f"{where} is missing.")


def _object(
    container: dict[str, Any], key: str, where: str, *, required: bool = True
) -> dict[str, Any]:
    value = container.get(key)
    if value is None:
        if required:
            raise _missing(where)
        return {}
    if not isinstance(value, dict):
        raise MalformedEvent(_expected(where, "an object", value))
    return value


def _object_type(obj: dict[str, Any], where: str, expected: str) -> None:
    actual = obj.get("object")
    if actual != expected:
        raise MalformedEvent(
            f"{where} should be a {expected} object, but its type is {_shown(actual)}."
        )


def _string(
    container: dict[str, Any],
    key: str,
    where: str,
    *,
    required: bool = True,
    max_length: int = MAX_ID_LENGTH,
) -> str:
    value = container.get(key)
    if value is None or value == "":
        if required:
            raise _missing(where)
        return ""
    if not isinstance(value, str):
        raise MalformedEvent(_expected(where, "a string", value))
    if len(value) > max_length:
        raise MalformedEvent(f"{where} is {len(value)} characters long, more than {max_length}.")
    return value


def _stripe_id(container: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    """Return an id given as a string or as the expanded object carrying it."""
    value = container.get(key)
    if isinstance(value, dict):
        return _string(value, "id", f"{where}.id", required=required)
    return _string(container, key, where, required=required)


def _boolean(container: dict[str, Any], key: str, where: str) -> bool:
    value = container.get(key)
    if value is None:
        raise _missing(where)
    if not isinstance(value, bool):
        raise MalformedEvent(_expected(where, "true or false", value))
    return value


def _amount(
    container: dict[str, Any], key: str, where: str, *, required: bool = True
) -> int | None:
    """Return a whole, non-negative number of minor units (JSON's 1000.0 is not one)."""
    value = container.get(key)
    if value is None:
        if required:
            raise _missing(where)
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEvent(_expected(where, "a whole number of minor units", value))
    if value < 0:
        raise MalformedEvent(f"{where} is negative ({value}).")
    if value > MAX_AMOUNT_MINOR:
        raise MalformedEvent(
            f"{where} has {len(str(value))} digits, more than any Stripe amount "
            f"({len(str(MAX_AMOUNT_MINOR))} at most)."
        )
    return value


def _required_amount(container: dict[str, Any], key: str, where: str) -> int:
    amount = _amount(container, key, where)
    assert amount is not None
    return amount


def _count(container: dict[str, Any], key: str, where: str) -> int:
    """Return a whole number such as a Unix time; absent is 0."""
    value = container.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEvent(_expected(where, "a whole number", value))
    return value


# --- A malformed event's identity and order ---------------------------------------


def _is_short_string(value: Any, max_length: int) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= max_length


def _digest_id(payload: bytes) -> str:
    return f"unreadable:{hashlib.sha256(payload).hexdigest()}"


def _unreadable(payload: bytes, message: str) -> MalformedEvent:
    return MalformedEvent(message, event_id=_digest_id(payload))


def _lenient_id(value: Any) -> str:
    """Return an id only when it is well-formed (a string, or an object carrying one)."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if _is_short_string(value, MAX_ID_LENGTH) else ""


def _reference(raw: dict[str, Any]) -> OrderReference:
    """Return what a malformed event says about its order, reading only well-formed parts."""
    data = raw.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        return OrderReference()
    kind = raw.get("type") if isinstance(raw.get("type"), str) else ""
    metadata = obj.get("metadata")
    number = _lenient_id(metadata.get("order_number")) if isinstance(metadata, dict) else ""
    session_id = charge_id = ""
    if kind in CHECKOUT_TYPES:
        number = number or _lenient_id(obj.get("client_reference_id"))
        session_id = _lenient_id(obj.get("id"))
    elif kind in REFUND_TYPES:
        charge_id = _lenient_id(obj.get("id"))
    elif kind in DISPUTE_TYPES:
        charge_id = _lenient_id(obj.get("charge"))
    return OrderReference(
        number=number,
        session_id=session_id,
        payment_intent_id=_lenient_id(obj.get("payment_intent")),
        charge_id=charge_id,
    )
