"""The Stripe webhook: signatures, one stored row per event, one credit per order."""

import hashlib
import itertools
import json
import threading
import time

import pytest
from django.db import connection
from django.test import Client

from billing.grants import UsageRefused
from billing.models import Account, LedgerEntry, OrderEvent, RechargeOrder, StripeEvent
from tests.billing.helpers import books_snapshot, fund, hold, make_token, post_webhook
from tests.billing.recharge_helpers import balance_of, credits_of, new_order
from tests.billing.stripe_fake import (
    charge_object,
    dispute_object,
    event,
    session_object,
    sign,
)
from tests.factories import StaffFactory, UserFactory

Status = RechargeOrder.Status
USD_10 = 10_000_000


def completed(order, **changes):
    return event("checkout.session.completed", session_object(order, **changes))


def test_same_event_five_times_in_a_row_credits_once(
    fake_stripe, client, user, django_capture_on_commit_callbacks
):
    order = new_order(user)
    payload = completed(order)
    with django_capture_on_commit_callbacks(execute=True):
        codes = [post_webhook(client, payload) for _ in range(5)]
    assert codes == [200] * 5
    assert len(credits_of(order)) == 1
    assert balance_of(user) == USD_10
    assert StripeEvent.objects.count() == 1
    order.refresh_from_db()
    assert order.status == Status.CREDITED
    assert order.ledger_entry == credits_of(order)[0]


@pytest.mark.django_db(transaction=True)
def test_same_event_five_times_concurrently_credits_once(fake_stripe):
    user = UserFactory()
    order = new_order(user)
    payload = completed(order)
    barrier = threading.Barrier(5)
    codes: list[int] = []

    def deliver():
        try:
            barrier.wait()
            codes.append(post_webhook(Client(), payload))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 5
    assert len(credits_of(order)) == 1
    assert balance_of(user) == USD_10
    assert StripeEvent.objects.count() == 1
    assert Account.objects.get(pk=user.pk).recharged == USD_10


def _sequences():
    kinds = ["completed_unpaid", "succeeded", "failed", "expired"]
    for size in range(1, 5):
        yield from itertools.permutations(kinds, size)


def test_every_order_of_checkout_events_credits_exactly_when_a_success_arrived(
    fake_stripe, client, db, django_capture_on_commit_callbacks
):
    user = UserFactory()
    expected_balance = 0
    for sequence in _sequences():
        order = new_order(user)
        payloads = {
            "completed_unpaid": completed(order, payment_status="unpaid"),
            "succeeded": event("checkout.session.async_payment_succeeded", session_object(order)),
            "failed": event(
                "checkout.session.async_payment_failed",
                session_object(order, payment_status="unpaid"),
            ),
            "expired": event(
                "checkout.session.expired",
                session_object(order, payment_status="unpaid", status="expired"),
            ),
        }
        with django_capture_on_commit_callbacks(execute=True):
            codes = [post_webhook(client, payloads[kind]) for kind in sequence]
        assert codes == [200] * len(sequence)
        order.refresh_from_db()
        if "succeeded" in sequence:
            expected_balance += order.credit
            assert len(credits_of(order)) == 1, sequence
            assert order.status == Status.CREDITED, sequence
        else:
            assert credits_of(order) == [], sequence
            first_end = next((k for k in sequence if k in ("failed", "expired")), None)
            expected = {"failed": Status.FAILED, "expired": Status.EXPIRED, None: Status.PENDING}
            assert order.status == expected[first_end], sequence
    assert balance_of(user) == expected_balance


def _bad_headers(payload: bytes) -> dict[str, str | None]:
    now = int(time.time())
    return {
        "wrong secret": sign(payload, secret="whsec_not_ours"),
        "missing": None,
        "empty": "",
        "malformed": "this is not a signature",
        "no v1": f"t={now}",
        "bad timestamp": "t=yesterday,v1=abcdef",
        "older than tolerance": sign(payload, timestamp=now - 301),
        "future signature of other body": sign(payload + b" "),
    }


def test_bad_signatures_are_refused_and_write_nothing(
    fake_stripe, client, user, django_capture_on_commit_callbacks
):
    order = new_order(user)
    payload = completed(order)
    before = books_snapshot()
    events_before = OrderEvent.objects.count()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        for name, header in _bad_headers(payload).items():
            assert post_webhook(client, payload, header=header) == 400, name
        tampered = payload.replace(b'"amount_total": 1000', b'"amount_total": 1')
        assert tampered != payload
        assert post_webhook(client, tampered, header=sign(payload)) == 400
    assert callbacks == []
    assert books_snapshot() == before
    assert StripeEvent.objects.count() == 0
    assert OrderEvent.objects.count() == events_before
    order.refresh_from_db()
    assert order.status == Status.PENDING
    assert order.paid_at is None


def test_signed_bodies_that_are_not_events_are_stored_once_by_digest_and_acknowledged(
    fake_stripe, client, user
):
    # Given verified bodies that carry no usable event id
    bodies = {
        b"not json": "not JSON",
        b"{}": "id is missing",
        b'{"type": "checkout.session.completed"}': "id is missing",
        b"[]": "should be a JSON object, but is a list",
        b'{"id": 7, "type": "charge.refunded"}': "id should be a string, but is the number 7",
    }
    before = books_snapshot()

    # When each arrives twice
    for payload in bodies:
        assert post_webhook(client, payload) == 200, payload
        assert post_webhook(client, payload) == 200, payload

    # Then each is stored once, under the digest of its body, with what is wrong
    assert books_snapshot() == before
    for payload, problem in bodies.items():
        stored = StripeEvent.objects.get(
            event_id=f"unreadable:{hashlib.sha256(payload).hexdigest()}"
        )
        assert problem in stored.problem, payload
    assert StripeEvent.objects.count() == len(bodies)


def test_webhook_without_a_configured_secret_refuses(client, user, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    order = new_order(user)
    assert post_webhook(client, completed(order)) == 400
    assert StripeEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"amount_total": 999}, "amount"),
        ({"amount_total": 100_000}, "amount"),
        ({"currency": "eur"}, "currency"),
        ({"livemode": True}, "live mode"),
    ],
)
def test_a_payment_that_differs_from_the_order_is_flagged_not_credited(
    fake_stripe, client, user, changes, problem, django_capture_on_commit_callbacks
):
    order = new_order(user)
    before = books_snapshot()
    with django_capture_on_commit_callbacks(execute=True):
        assert post_webhook(client, completed(order, **changes)) == 200
        # A redelivery of a correct-looking success does not override the flag either.
        assert post_webhook(client, completed(order, **changes)) == 200
    order.refresh_from_db()
    assert order.status == Status.NEEDS_ATTENTION
    assert order.paid_at is None
    assert credits_of(order) == []
    assert books_snapshot() == before
    assert order.events.filter(kind="mismatch", message__contains=problem).count() == 1


def test_unknown_orders_and_unhandled_events_are_acknowledged(fake_stripe, client, user):
    order = new_order(user)
    before = books_snapshot()
    other = session_object(
        order,
        metadata={"order_number": "R-1999-000001"},
        client_reference_id="R-1999-000001",
        id="cs_unknown",
    )
    assert post_webhook(client, event("checkout.session.completed", other)) == 200
    assert post_webhook(client, event("customer.created", {"id": "cus_1"})) == 200
    assert books_snapshot() == before
    assert StripeEvent.objects.count() == 2


def _paid_and_credited(client, user, capture, credit=USD_10):
    order = new_order(user, credit=credit)
    with capture(execute=True):
        assert post_webhook(client, completed(order)) == 200
    order.refresh_from_db()
    assert order.status == Status.CREDITED
    return order


def test_a_refund_delivered_twice_debits_once(
    fake_stripe, client, user, django_capture_on_commit_callbacks
):
    order = _paid_and_credited(client, user, django_capture_on_commit_callbacks)
    refunded = charge_object(order, [("re_1", order.amount_minor)])
    payload = event("charge.refunded", refunded)
    assert post_webhook(client, payload) == 200
    assert post_webhook(client, payload) == 200  # the identical event again
    # Another event id carrying the same refund (Stripe sends charge.refunded again
    # when a later refund is made, listing the earlier ones too).
    assert post_webhook(client, event("charge.refunded", refunded)) == 200
    assert balance_of(user) == 0
    assert LedgerEntry.objects.filter(idempotency_key="refund:re_1").count() == 1
    order.refresh_from_db()
    assert order.status == Status.REFUNDED


def test_partial_refunds_debit_their_share_and_add_up_to_the_credit(
    fake_stripe, client, user, django_capture_on_commit_callbacks
):
    order = _paid_and_credited(client, user, django_capture_on_commit_callbacks)
    assert order.amount_minor == 1000
    first = event("charge.refunded", charge_object(order, [("re_a", 333)]))
    assert post_webhook(client, first) == 200
    assert balance_of(user) == USD_10 - 3_330_000
    order.refresh_from_db()
    assert order.status == Status.CREDITED  # partly refunded
    second = event("charge.refunded", charge_object(order, [("re_a", 333), ("re_b", 1)]))
    third = event(
        "charge.refunded", charge_object(order, [("re_a", 333), ("re_b", 1), ("re_c", 666)])
    )
    assert post_webhook(client, third) == 200  # arrives before the second
    assert post_webhook(client, second) == 200
    assert balance_of(user) == 0
    amounts = dict(
        LedgerEntry.objects.filter(kind="refund").values_list("idempotency_key", "amount")
    )
    assert amounts == {"refund:re_a": -3_330_000, "refund:re_b": -10_000, "refund:re_c": -6_660_000}
    order.refresh_from_db()
    assert order.status == Status.REFUNDED


def test_a_refund_after_spending_takes_the_balance_negative_and_blocks_usage(
    fake_stripe, client, user, django_capture_on_commit_callbacks
):
    order = _paid_and_credited(client, user, django_capture_on_commit_callbacks)
    token, _ = make_token(user)
    hold(token, 4_000_000)
    assert (
        post_webhook(client, event("charge.refunded", charge_object(order, [("re_1", 1000)])))
        == 200
    )
    account = Account.objects.get(pk=user.pk)
    assert account.balance == 0
    assert account.reserved == 4_000_000
    with pytest.raises(UsageRefused) as refused:
        hold(token, 1)
    assert refused.value.code == "insufficient_quota"
    assert Account.objects.get(pk=user.pk).reserved == 4_000_000


def test_dispute_created_freezes_and_won_unfreezes_without_touching_the_balance(
    fake_stripe, client, user, django_capture_on_commit_callbacks
):
    order = _paid_and_credited(client, user, django_capture_on_commit_callbacks)
    token, _ = make_token(user)
    opened = dispute_object(order, dispute_id="dp_1", status="needs_response")
    assert post_webhook(client, event("charge.dispute.created", opened)) == 200
    assert Account.objects.get(pk=user.pk).is_frozen
    before = books_snapshot()
    with pytest.raises(UsageRefused) as refused:
        hold(token, 1)
    assert refused.value.code == "account_frozen"
    assert "dispute" in refused.value.message
    assert books_snapshot() == before
    won = dispute_object(order, dispute_id="dp_1", status="won")
    assert post_webhook(client, event("charge.dispute.closed", won)) == 200
    account = Account.objects.get(pk=user.pk)
    assert not account.is_frozen
    assert account.balance == USD_10
    order.refresh_from_db()
    assert order.status == Status.CREDITED
    hold(token, 1)


def test_a_lost_dispute_debits_once_and_unfreezes(
    fake_stripe, client, user, django_capture_on_commit_callbacks
):
    order = _paid_and_credited(client, user, django_capture_on_commit_callbacks)
    fund(user, 1_000_000)
    assert (
        post_webhook(
            client,
            event(
                "charge.dispute.created",
                dispute_object(order, dispute_id="dp_2", status="needs_response"),
            ),
        )
        == 200
    )
    lost = event("charge.dispute.closed", dispute_object(order, dispute_id="dp_2", status="lost"))
    assert post_webhook(client, lost) == 200
    assert post_webhook(client, lost) == 200
    assert (
        post_webhook(
            client,
            event("charge.dispute.closed", dispute_object(order, dispute_id="dp_2", status="lost")),
        )
        == 200
    )
    account = Account.objects.get(pk=user.pk)
    assert account.balance == 1_000_000
    assert not account.is_frozen
    assert LedgerEntry.objects.filter(idempotency_key="dispute:dp_2").count() == 1
    order.refresh_from_db()
    assert order.status == Status.REFUNDED


def test_one_of_two_disputes_closing_keeps_the_account_frozen(
    fake_stripe, client, user, django_capture_on_commit_callbacks
):
    first = _paid_and_credited(client, user, django_capture_on_commit_callbacks)
    second = _paid_and_credited(client, user, django_capture_on_commit_callbacks)
    for order, dispute_id in ((first, "dp_a"), (second, "dp_b")):
        payload = event(
            "charge.dispute.created",
            dispute_object(order, dispute_id=dispute_id, status="needs_response"),
        )
        assert post_webhook(client, payload) == 200
    won = event("charge.dispute.closed", dispute_object(first, dispute_id="dp_a", status="won"))
    assert post_webhook(client, won) == 200
    assert Account.objects.get(pk=user.pk).is_frozen
    won = event("charge.dispute.closed", dispute_object(second, dispute_id="dp_b", status="won"))
    assert post_webhook(client, won) == 200
    assert not Account.objects.get(pk=user.pk).is_frozen


def test_refunds_without_a_refund_list_debit_the_growth_of_the_refunded_total(
    fake_stripe, client, user, django_capture_on_commit_callbacks
):
    order = _paid_and_credited(client, user, django_capture_on_commit_callbacks)

    def refunded_total(total):
        charge = charge_object(order, [])
        del charge["refunds"]  # newer API versions leave the list out of the event
        charge["amount_refunded"] = total
        return event("charge.refunded", charge)

    first = refunded_total(250)
    assert post_webhook(client, first) == 200
    assert post_webhook(client, first) == 200
    assert post_webhook(client, refunded_total(250)) == 200  # same total, another event id
    assert balance_of(user) == USD_10 - 2_500_000
    assert post_webhook(client, refunded_total(1000)) == 200
    assert post_webhook(client, refunded_total(250)) == 200  # a late, older total
    assert balance_of(user) == 0
    order.refresh_from_db()
    assert order.status == Status.REFUNDED
    assert LedgerEntry.objects.filter(kind="refund").count() == 2


def test_refunding_or_losing_a_dispute_on_a_payment_never_credited_takes_nothing(
    fake_stripe, client, user, django_capture_on_commit_callbacks
):
    # Given a payment that did not match its order (flagged, never credited)
    order = new_order(user)
    fund(user, 2_000_000)
    with django_capture_on_commit_callbacks(execute=True):
        assert post_webhook(client, completed(order, amount_total=999)) == 200
    before = books_snapshot()

    # When the merchant refunds it, and a dispute on it is lost
    refund = event("charge.refunded", charge_object(order, [("re_x", order.amount_minor)]))
    assert post_webhook(client, refund) == 200
    lost = event("charge.dispute.closed", dispute_object(order, dispute_id="dp_x", status="lost"))
    assert post_webhook(client, lost) == 200

    # Then nothing was taken from the balance, and the order says why
    assert books_snapshot() == before
    assert balance_of(user) == 2_000_000
    assert not LedgerEntry.objects.filter(kind__in=["refund", "dispute"]).exists()
    order.refresh_from_db()
    assert order.status == Status.REFUNDED
    assert order.events.filter(message__contains="before any credit").count() == 2


# --- Signed but malformed events --------------------------------------------------
# Each builds a verified event about `order` whose shape is wrong. Stripe would
# redeliver a refused event for days; the webhook must store it with its problem,
# answer 2xx, move no money and flag the order it names.


def _refunded_with(order, **refund_changes):
    charge = charge_object(order, [("re_bad", order.amount_minor)])
    charge["refunds"]["data"][0].update(refund_changes)
    return event("charge.refunded", charge)


def _refund_without_id(order):
    charge = charge_object(order, [("re_bad", order.amount_minor)])
    del charge["refunds"]["data"][0]["id"]
    return event("charge.refunded", charge)


def _refunded_total_as(order, value):
    charge = charge_object(order, [])
    del charge["refunds"]
    charge["amount_refunded"] = value
    return event("charge.refunded", charge)


def _completed_with(order, **changes):
    return event("checkout.session.completed", session_object(order, **changes))


def _without_object(order):
    payload = json.loads(_completed_with(order))
    payload["data"] = {}
    return json.dumps(payload).encode()


def _dispute_without_charge(kind, status):
    def build(order):
        dispute = dispute_object(order, dispute_id="dp_nocharge", status=status)
        del dispute["charge"]
        return event(kind, dispute)

    return build


MALFORMED = {
    # name: (order state, build(order), words of the stored problem, order named)
    "refund without id": (
        "credited",
        _refund_without_id,
        "data.object.refunds.data[0].id is missing",
        True,
    ),
    "refund amount as a string": (
        "credited",
        lambda order: _refunded_with(order, amount="1000"),
        'refunds.data[0].amount should be a whole number of minor units, but is the string "1000"',
        True,
    ),
    "refund amount as a float": (
        "credited",
        lambda order: _refunded_with(order, amount=1000.0),
        "but is the decimal number 1000.0",
        True,
    ),
    "refund amount huge": (
        "credited",
        lambda order: _refunded_with(order, amount=10**30),
        "refunds.data[0].amount has 31 digits",
        True,
    ),
    "refund amount negative": (
        "credited",
        lambda order: _refunded_with(order, amount=-1000),
        "refunds.data[0].amount is negative",
        True,
    ),
    "refunded total as a string": (
        "credited",
        lambda order: _refunded_total_as(order, "1000"),
        "data.object.amount_refunded should be a whole number of minor units, "
        'but is the string "1000"',
        True,
    ),
    "payment amount as a string": (
        "pending",
        lambda order: _completed_with(order, amount_total=str(order.amount_minor)),
        "data.object.amount_total should be a whole number of minor units, "
        'but is the string "1000"',
        True,
    ),
    "payment amount as a float": (
        "pending",
        lambda order: _completed_with(order, amount_total=float(order.amount_minor)),
        "data.object.amount_total should be a whole number of minor units",
        True,
    ),
    "payment amount huge": (
        "pending",
        lambda order: _completed_with(order, amount_total=10**25),
        "data.object.amount_total has 26 digits",
        True,
    ),
    "metadata as a string": (
        "pending",
        lambda order: _completed_with(order, metadata=f"order_number={order.number}"),
        "data.object.metadata should be an object, but is the string",
        True,
    ),
    "missing data.object": (
        "pending",
        _without_object,
        "data.object is missing",
        False,
    ),
    "object of the wrong type for a refund": (
        "credited",
        lambda order: event(
            "charge.refunded",
            dispute_object(order, dispute_id="dp_misplaced", status="lost"),
        ),
        'data.object should be a charge object, but its type is the string "dispute"',
        True,
    ),
    "object that is a list": (
        "credited",
        lambda order: json.dumps(
            {**json.loads(event("charge.refunded", {})), "data": {"object": ["ch_1"]}}
        ).encode(),
        "data.object should be an object, but is a list",
        False,
    ),
    "dispute opened without a charge": (
        "credited",
        _dispute_without_charge("charge.dispute.created", "needs_response"),
        "data.object.charge is missing",
        True,
    ),
    "dispute lost without a charge": (
        "credited",
        _dispute_without_charge("charge.dispute.closed", "lost"),
        "data.object.charge is missing",
        True,
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_signed_malformed_event_is_stored_with_its_problem_moves_no_money_and_flags_its_order(
    case, fake_stripe, client, user, mailoutbox, django_capture_on_commit_callbacks
):
    # Given an order (pending, or paid and credited) and admins who may credit by hand
    state, build, problem, names_order = MALFORMED[case]
    admin = StaffFactory(email="ops@example.com")
    if state == "credited":
        order = _paid_and_credited(client, user, django_capture_on_commit_callbacks)
    else:
        order = new_order(user)
    order.refresh_from_db()
    status_before = order.status
    payload = build(order)
    event_id = json.loads(payload)["id"]
    before = books_snapshot()
    mailoutbox.clear()

    # When Stripe delivers the signed event, and then delivers it again
    with django_capture_on_commit_callbacks(execute=True):
        assert post_webhook(client, payload) == 200
        assert post_webhook(client, payload) == 200

    # Then it is stored once, with what is wrong, and nothing moved
    stored = StripeEvent.objects.get(event_id=event_id)
    assert problem in stored.problem
    assert stored.type == json.loads(payload)["type"]
    assert StripeEvent.objects.filter(event_id=event_id).count() == 1
    assert books_snapshot() == before
    assert not Account.objects.get(pk=user.pk).is_frozen
    order.refresh_from_db()
    assert order.paid_at is None or state == "credited"
    flags = order.events.filter(kind="unreadable_event")
    if names_order:
        # The order is flagged once, with the reason, and the admins are told
        [flag] = flags
        assert event_id in flag.message
        assert problem in flag.message
        expected = Status.NEEDS_ATTENTION if state == "pending" else status_before
        assert order.status == expected
        [email] = mailoutbox
        assert email.to == [admin.email]
        assert order.number in email.body
        assert problem in email.body
    else:
        assert not flags.exists()
        assert order.status == status_before
        assert mailoutbox == []


def test_a_malformed_event_for_an_unknown_order_is_stored_and_flags_nothing(
    fake_stripe, client, user
):
    order = new_order(user)
    session = session_object(
        order,
        amount_total="1000",
        metadata={"order_number": "R-1999-000001"},
        client_reference_id="R-1999-000001",
        id="cs_unknown",
        payment_intent="pi_unknown",
    )
    before = books_snapshot()
    assert post_webhook(client, event("checkout.session.completed", session)) == 200
    assert StripeEvent.objects.get().problem
    assert books_snapshot() == before
    assert not OrderEvent.objects.filter(kind="unreadable_event").exists()
    order.refresh_from_db()
    assert order.status == Status.PENDING


def test_a_flagged_pending_order_is_still_credited_by_a_later_valid_payment_event(
    fake_stripe, client, user, django_capture_on_commit_callbacks
):
    # Given a pending order flagged by an unreadable success
    order = new_order(user)
    with django_capture_on_commit_callbacks(execute=True):
        malformed = completed(order, amount_total=float(order.amount_minor))
        assert post_webhook(client, malformed) == 200
    order.refresh_from_db()
    assert order.status == Status.NEEDS_ATTENTION
    assert credits_of(order) == []

    # When Stripe then sends a well-formed success for it (another event id)
    with django_capture_on_commit_callbacks(execute=True):
        assert post_webhook(client, completed(order)) == 200

    # Then it is credited once, as any verified payment
    order.refresh_from_db()
    assert order.status == Status.CREDITED
    assert len(credits_of(order)) == 1
    assert balance_of(user) == USD_10
