"""Reading Stripe's events: typed values out, or one specific exception with a human message."""

import json

import pytest

from billing.recharge import Dispute, Refund
from billing.stripe_events import (
    Charge,
    CheckoutSession,
    MalformedEvent,
    OrderReference,
    event_parse,
)
from tests.billing.stripe_fake import charge_object, event, session_object


class _Order:
    number = "R-2026-000042"
    amount_minor = 1000
    currency = "usd"
    stripe_session_id = "cs_test_42"


ORDER = _Order()


def _session(**changes):
    return session_object(ORDER, **changes)


def _charge(refunds):
    return charge_object(ORDER, refunds)


def test_a_checkout_session_is_read_into_a_typed_payment():
    parsed = event_parse(
        event(
            "checkout.session.completed",
            _session(payment_intent={"id": "pi_expanded", "object": "payment_intent"}),
            event_id="evt_1",
        )
    )

    assert (parsed.id, parsed.type, parsed.livemode) == (
        "evt_1",
        "checkout.session.completed",
        False,
    )
    assert isinstance(parsed.data, CheckoutSession)
    assert parsed.data.order_number == ORDER.number
    assert parsed.data.payment.amount_minor == 1000
    assert parsed.data.payment.payment_intent_id == "pi_expanded"


def test_only_refunds_that_gave_money_back_are_counted():
    charge = _charge([("re_ok", 300), ("re_failed", 700)])
    charge["refunds"]["data"][0]["status"] = "failed"  # the list is newest first

    parsed = event_parse(event("charge.refunded", charge))

    assert parsed.data == Charge(
        id=f"ch_{ORDER.number}",
        payment_intent_id=f"pi_{ORDER.number}",
        amount_refunded_minor=1000,
        refunds=(Refund(id="re_ok", amount_minor=300, created=1_700_000_000),),
    )


def test_a_dispute_is_read_with_its_charge():
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "amount": 1000,
        "charge": {"id": "ch_1", "object": "charge"},
        "payment_intent": None,
        "status": "lost",
    }

    parsed = event_parse(event("charge.dispute.closed", dispute))

    assert parsed.data == Dispute(
        id="dp_1", amount_minor=1000, status="lost", payment_intent_id="", charge_id="ch_1"
    )


def test_types_comet_does_not_act_on_carry_no_data():
    assert event_parse(event("customer.created", {"id": "cus_1"})).data is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount_total": True}, "but is the boolean true"),
        ({"payment_intent": "pi_" + "x" * 200}, "payment_intent is 203 characters long"),
        ({"livemode": "false"}, "livemode should be true or false"),
        ({"id": None}, "data.object.id is missing"),
        ({"metadata": {"order_number": 42}}, "metadata.order_number should be a string"),
    ],
)
def test_a_malformed_session_raises_one_exception_naming_the_field(changes, message):
    payload = event("checkout.session.completed", _session(**changes), event_id="evt_bad")

    with pytest.raises(MalformedEvent) as raised:
        event_parse(payload)

    assert message in str(raised.value)
    assert raised.value.event_id == "evt_bad"
    assert raised.value.type == "checkout.session.completed"


def test_a_malformed_event_still_names_the_order_by_what_is_well_formed():
    session = _session(amount_total="1000", metadata="not an object")

    with pytest.raises(MalformedEvent) as raised:
        event_parse(event("checkout.session.completed", session))

    assert raised.value.reference == OrderReference(
        number=ORDER.number,
        session_id=ORDER.stripe_session_id,
        payment_intent_id=f"pi_{ORDER.number}",
    )


def test_an_event_id_too_long_to_store_is_replaced_by_the_body_digest():
    payload = json.dumps({"id": "evt_" + "x" * 300, "type": "charge.refunded"}).encode()

    with pytest.raises(MalformedEvent) as raised:
        event_parse(payload)

    assert raised.value.event_id.startswith("unreadable:")
    assert "id is 304 characters long" in str(raised.value)
