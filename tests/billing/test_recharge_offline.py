"""The recharge page without Stripe, the quote's reasons, and an amount kept on the way back."""

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import Account, RechargeOrder, RechargeTier, UserDiscount
from billing.stripe_api import PaymentUnavailable
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

USD = 1_000_000


@pytest.fixture
def no_stripe(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""


@pytest.fixture
def ladder(db):
    return {
        "single50": RechargeTier.objects.create(
            kind="single", threshold=50 * USD, discount_percent=Decimal(5)
        ),
        "single200": RechargeTier.objects.create(
            kind="single", threshold=200 * USD, discount_percent=Decimal(10)
        ),
        "lifetime1000": RechargeTier.objects.create(
            kind="lifetime", threshold=1000 * USD, discount_percent=Decimal(12)
        ),
    }


def _text(html: str) -> str:
    """The page's words, tags dropped and spaces collapsed (none before punctuation)."""
    words = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    return re.sub(r" ([.,;:])", r"\1", words)


def test_without_stripe_the_calculator_is_shown_and_paying_is_off_with_the_reason(
    no_stripe, ladder, user_client
):
    html = user_client.get(reverse("console:recharge"), {"amount": "200"}).content.decode()

    assert 'id="recharge-amount"' in html
    assert 'value="200"' in html
    assert 'id="quote-charge">$180.00<' in html
    assert 'id="payments-off"' in html
    assert "Card payments are not set up on this server" in html
    assert (
        '<button type="submit" id="recharge-pay" disabled aria-describedby="payments-off">' in html
    )
    assert 'data-payments="off"' in html
    text = _text(html)
    assert "One top-up of $50.00 or more" in text
    assert "Once your top-ups add up to $1,000.00" in text
    assert "12% off every later top-up" in text
    assert "up to 12% off" in text
    assert "From $5.00 to $10,000.00, in whole cents." in text


def test_the_quote_works_without_stripe_and_says_which_discount_applies_and_why(
    no_stripe, ladder, user_client
):
    def quote(amount: str) -> str:
        response = user_client.get(reverse("billing:recharge-preview"), {"amount": amount})
        assert response.status_code == 200
        return _text(response.content.decode())

    text = quote("20")
    assert "Your card is charged $20.00" in text
    assert "No discount reaches this amount." in text
    assert "Top up $50.00 or more for 5% off." in text
    assert (
        "Your top-ups so far add up to $0.00; once they reach $1,000.00, "
        "every later top-up gets 12% off." in text
    )

    text = quote("250")
    assert "Discount 10% off" in text
    assert "Your card is charged $225.00 $250.00" in text
    assert "10% off because this one top-up is $200.00 or more." in text


def test_a_lifetime_tier_and_a_personal_discount_are_named_with_what_they_beat(
    no_stripe, ladder, user, user_client
):
    Account.objects.filter(pk=user.pk).update(recharged=1200 * USD)
    UserDiscount.objects.create(user=user, discount_percent=Decimal(3))

    html = user_client.get(reverse("billing:recharge-preview"), {"amount": "250"}).content.decode()
    text = _text(html)

    assert 'data-applied="lifetime-' in html
    assert "Your card is charged $220.00" in text
    assert "12% off because your top-ups so far add up to $1,200.00, at least $1,000.00." in text
    assert (
        "Discounts are not added together: the best one applies, here instead of "
        "10% for one top-up of $200.00 or more and your personal 3%." in text
    )
    assert 'id="quote-lifetime"' not in html  # reached already

    UserDiscount.objects.filter(user=user).update(discount_percent=Decimal(15))
    text = _text(
        user_client.get(reverse("billing:recharge-preview"), {"amount": "10"}).content.decode()
    )
    assert "15% off: your personal discount, on every top-up." in text


def test_the_quote_says_when_this_top_up_reaches_a_lifetime_tier(
    no_stripe, ladder, user, user_client
):
    Account.objects.filter(pk=user.pk).update(recharged=900 * USD)

    text = _text(
        user_client.get(reverse("billing:recharge-preview"), {"amount": "100"}).content.decode()
    )

    assert (
        "With this one your top-ups add up to $1,000.00: every later top-up gets 12% off." in text
    )


def test_an_invalid_amount_shows_why_and_leaves_pay_off(no_stripe, user_client):
    html = user_client.get(reverse("console:recharge"), {"amount": "12.345"}).content.decode()

    assert 'id="amount-error"' in html
    assert "at most 2 decimals" in html
    assert 'aria-invalid="true"' in html
    assert 'id="recharge-pay" disabled' in html


def test_paying_without_stripe_is_refused_and_keeps_the_amount(no_stripe, user_client):
    response = user_client.post(
        reverse("billing:recharge-checkout"), {"amount": "75.50"}, follow=True
    )

    assert not RechargeOrder.objects.exists()
    [(url, status)] = response.redirect_chain
    assert (url, status) == (reverse("console:recharge") + "?amount=75.50", 302)
    html = response.content.decode()
    assert 'value="75.50"' in html
    assert "Card payments are not set up on this server" in html
    assert 'id="quote-charge">$75.50<' in html


def test_an_invalid_amount_is_refused_by_the_server_and_kept_in_the_field(fake_stripe, user_client):
    response = user_client.post(reverse("billing:recharge-checkout"), {"amount": "3"})

    assert response.status_code == 400
    html = response.content.decode()
    assert 'value="3"' in html
    assert "The smallest top-up is $5.00." in html
    assert 'id="recharge-pay" disabled' in html
    assert not RechargeOrder.objects.exists()


def test_leaving_stripes_checkout_comes_back_with_the_amount_kept(fake_stripe, user, user_client):
    user_client.post(reverse("billing:recharge-checkout"), {"amount": "64.25"})
    order = RechargeOrder.objects.get()

    cancel_url = fake_stripe.creates()[-1].form["cancel_url"]
    assert cancel_url == f"http://testserver/recharge/?cancelled={order.number}"
    html = user_client.get(cancel_url).content.decode()

    assert 'id="recharge-cancelled"' in html
    assert order.number in html
    assert "nothing was charged" in html
    assert 'value="64.25"' in html
    assert 'id="quote-charge">$64.25<' in html
    assert 'id="recharge-pay">' in html  # enabled: the amount is good


def test_someone_elses_or_a_paid_order_is_not_offered_back(fake_stripe, user, user_client):
    user_client.post(reverse("billing:recharge-checkout"), {"amount": "64.25"})
    order = RechargeOrder.objects.get()
    other = UserFactory()
    other_order = RechargeOrder.objects.create(
        number="OTHER1",
        user=other,
        credit=99 * USD,
        currency="usd",
        price_per_usd=Decimal(1),
        amount_minor=9900,
    )

    html = user_client.get(reverse("console:recharge"), {"cancelled": other_order.number})
    assert 'id="recharge-cancelled"' not in html.content.decode()
    assert 'value="99.00"' not in html.content.decode()

    RechargeOrder.objects.filter(pk=order.pk).update(paid_at=order.created_at)
    html = user_client.get(reverse("console:recharge"), {"cancelled": order.number})
    assert 'id="recharge-cancelled"' not in html.content.decode()


def test_a_checkout_stripe_refuses_comes_back_with_the_amount_kept(
    fake_stripe, user_client, monkeypatch
):
    def refuse(**kwargs: object) -> None:
        raise PaymentUnavailable("The payment service did not answer; try again.")

    monkeypatch.setattr("billing.views.checkout_session_create", refuse)

    response = user_client.post(reverse("billing:recharge-checkout"), {"amount": "40"}, follow=True)

    assert RechargeOrder.objects.get().status == RechargeOrder.Status.FAILED
    assert response.redirect_chain == [(reverse("console:recharge") + "?amount=40.00", 302)]
    html = response.content.decode()
    assert "did not answer" in html
    assert 'value="40.00"' in html


def test_a_refused_code_leaves_the_calculator_priced(fake_stripe, user_client):
    response = user_client.post(reverse("billing:redeem"), {"code": "NOPE"})

    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="quote-charge">$10.00<' in html
    assert 'id="recharge-pay">' in html
