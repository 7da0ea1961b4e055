"""Prices: the preview, the order and the amount Stripe is asked for are one number."""

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import RechargeOrder, RechargeSettings, RechargeTier, UserDiscount
from billing.pricing import recharge_quote
from billing.services import account_credit
from core.money import charge_minor, format_minor
from tests.billing.helpers import books_snapshot

USD = 1_000_000


def test_charge_minor_rounds_half_up_once():
    assert (
        charge_minor(
            credit=10 * USD, price_per_usd=Decimal(1), discount_percent=Decimal(0), currency="usd"
        )
        == 1000
    )
    # $0.125 -> 12.5 cents -> 13 (half up), never 12.
    assert (
        charge_minor(
            credit=125_000, price_per_usd=Decimal(1), discount_percent=Decimal(0), currency="usd"
        )
        == 13
    )
    assert (
        charge_minor(
            credit=100 * USD,
            price_per_usd=Decimal(1),
            discount_percent=Decimal("7.5"),
            currency="usd",
        )
        == 9250
    )
    # Yen have no minor unit: ¥150.5 -> ¥151.
    assert (
        charge_minor(
            credit=1 * USD,
            price_per_usd=Decimal("150.5"),
            discount_percent=Decimal(0),
            currency="jpy",
        )
        == 151
    )
    assert format_minor(9250, "usd") == "$92.50"
    assert format_minor(151, "jpy") == "¥151"
    assert format_minor(1234, "chf") == "12.34 CHF"


def _tiers():
    RechargeTier.objects.create(kind="single", threshold=100 * USD, discount_percent=Decimal(5))
    RechargeTier.objects.create(kind="single", threshold=500 * USD, discount_percent=Decimal(10))
    RechargeTier.objects.create(
        kind="lifetime", threshold=3000 * USD, discount_percent=Decimal("12.5")
    )


def test_the_best_discount_wins_and_its_source_is_named(user):
    _tiers()
    assert recharge_quote(user_id=user.pk, credit=99 * USD).discount_source == ""
    quote = recharge_quote(user_id=user.pk, credit=100 * USD)
    assert (quote.discount_percent, quote.discount_source) == (Decimal(5), "single")
    # A bonus is not a recharge: lifetime tiers stay out of reach.
    account_credit(user_id=user.pk, amount=3000 * USD, idempotency_key="bonus", kind="bonus")
    assert recharge_quote(user_id=user.pk, credit=600 * USD).discount_percent == Decimal(10)
    from billing.models import Account

    Account.objects.filter(pk=user.pk).update(recharged=3000 * USD)
    quote = recharge_quote(user_id=user.pk, credit=600 * USD)
    assert (quote.discount_percent, quote.discount_source) == (Decimal("12.5"), "lifetime")
    UserDiscount.objects.create(user=user, discount_percent=Decimal(20), note="Enterprise")
    quote = recharge_quote(user_id=user.pk, credit=10 * USD)
    assert (quote.discount_percent, quote.discount_source) == (Decimal(20), "user")
    assert quote.amount_minor == 800


def _preview_charge(client, amount: str) -> str:
    response = client.get(reverse("billing:recharge-preview"), {"amount": amount})
    assert response.status_code == 200
    match = re.search(r'id="quote-charge">([^<]+)<', response.content.decode())
    assert match, response.content.decode()
    return match.group(1)


@pytest.mark.parametrize(
    ("currency", "price"),
    [("usd", Decimal("1")), ("jpy", Decimal("151.37")), ("eur", Decimal("0.9213"))],
)
def test_charged_amount_equals_the_preview_at_below_and_above_every_boundary(
    fake_stripe, user_client, user, currency, price
):
    _tiers()
    RechargeSettings.objects.update_or_create(
        pk=1,
        defaults={
            "currency": currency,
            "price_per_usd": price,
            "min_credit_usd": Decimal(5),
            "max_credit_usd": Decimal(10000),
        },
    )
    UserDiscount.objects.create(user=user, discount_percent=Decimal("7.77"))
    amounts = ["5", "5.01", "10000", "9999.99"]
    for boundary in ("100", "500"):
        value = Decimal(boundary)
        amounts += [str(value - Decimal("0.01")), boundary, str(value + Decimal("0.01"))]
    for amount in amounts:
        shown = _preview_charge(user_client, amount)
        response = user_client.post(reverse("billing:recharge-checkout"), {"amount": amount})
        assert response.status_code == 303, amount
        order = RechargeOrder.objects.latest("pk")
        request = fake_stripe.creates()[-1]
        assert request.headers["Idempotency-Key"] == f"order-{order.number}"
        assert int(request.form["line_items[0][price_data][unit_amount]"]) == order.amount_minor
        assert request.form["line_items[0][price_data][currency]"] == currency
        assert format_minor(order.amount_minor, currency) == shown, amount
        expected = recharge_quote(user_id=user.pk, credit=order.credit)
        assert order.amount_minor == expected.amount_minor
        assert order.discount_percent == expected.discount_percent
        assert order.credit == int(Decimal(amount) * USD)
        assert response["Location"].startswith("https://checkout.stripe.com/c/pay/")
        assert order.stripe_session_id in response["Location"]
    # Below 100 the personal 7.77% wins; from 100 the tiers do not beat it until 500.
    sources = dict(RechargeOrder.objects.values_list("credit", "discount_source"))
    assert sources[int(Decimal("99.99") * USD)] == "user"
    assert sources[500 * USD] == "single"


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("4.99", "smallest top-up is $5.00"),
        ("10000.01", "largest top-up is $10,000.00"),
        ("-20", "more than zero"),
        ("0", "more than zero"),
        ("twenty", "Enter an amount in dollars"),
        ("", "This field is required"),
        ("NaN", "Enter an amount in dollars"),
        ("Infinity", "Enter an amount in dollars"),
        ("10.001", "at most 2 decimals"),
        ("12.345", "at most 2 decimals"),
        # Decimal() took these; quantize() then raised on the huge ones (500).
        ("1e309", "Enter an amount in dollars"),
        ("1e20", "Enter an amount in dollars"),
        ("1E+3", "Enter an amount in dollars"),
        ("inf", "Enter an amount in dollars"),
        ("nan", "Enter an amount in dollars"),
        ("-inf", "Enter an amount in dollars"),
        ("1" + "0" * 19, "largest top-up is $10,000.00"),
        ("٣٠", "Enter an amount in dollars"),
        ("²⁰", "Enter an amount in dollars"),
        ("\uff12\uff10", "Enter an amount in dollars"),
    ],
)
def test_bad_amounts_get_a_clear_error_and_no_order(fake_stripe, user_client, amount, message):
    before = books_snapshot()
    preview = user_client.get(reverse("billing:recharge-preview"), {"amount": amount})
    assert preview.status_code == 200
    assert message in preview.content.decode()
    assert 'id="quote-charge"' not in preview.content.decode()
    response = user_client.post(reverse("billing:recharge-checkout"), {"amount": amount})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not RechargeOrder.objects.exists()
    assert fake_stripe.creates() == []
    assert books_snapshot() == before


def test_a_nul_in_the_posted_amount_is_a_form_error_and_no_order(fake_stripe, user_client):
    before = books_snapshot()
    response = user_client.post(reverse("billing:recharge-checkout"), {"amount": "20\x00"})
    assert response.status_code == 400
    assert "Null characters are not allowed" in response.content.decode()
    assert not RechargeOrder.objects.exists()
    assert fake_stripe.creates() == []
    assert books_snapshot() == before
