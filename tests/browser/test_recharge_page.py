import re
from decimal import Decimal

import pytest
from django.core.management import call_command

from billing.models import RechargeOrder, RechargeTier
from tests.factories import DEFAULT_PASSWORD, StaffFactory, UserFactory

from .conftest import SIZES, look, resize, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_recharge_preview_follows_presets_and_typing_and_checkout_charges_it(page, fake_stripe):
    RechargeTier.objects.create(kind="single", threshold=100_000_000, discount_percent=Decimal(5))
    RechargeTier.objects.create(kind="single", threshold=500_000_000, discount_percent=Decimal(10))
    user = UserFactory()
    page.goto("/accounts/login/")
    page.get_by_label("Email", exact=True).fill(user.email)
    page.get_by_label("Password", exact=True).fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name=re.compile("Welcome")).wait_for()

    page.goto("/recharge/")
    charge = page.locator("#quote-charge")
    assert charge.inner_text() == "$10.00"

    # A preset fills the field and the price follows without a page load.
    page.get_by_role("button", name="$100.00", exact=True).click()
    page.locator("#quote-discount").get_by_text("5%").wait_for()
    assert charge.inner_text() == "$95.00"

    amount = page.get_by_label("Amount of credit (USD)")
    pay = page.locator("#recharge-pay")
    assert pay.is_enabled()
    amount.fill("12.345")
    # Pay goes off as the amount is typed, before the server's answer is in.
    assert pay.is_disabled()
    page.locator("#amount-error").get_by_text("at most 2 decimals").wait_for()
    assert pay.is_disabled()

    amount.fill("499.99")
    page.get_by_text("Top up $500.00 or more for 10% off").wait_for()
    assert charge.inner_text() == "$474.99"

    amount.fill("500")
    page.locator("#quote-charge").get_by_text("$450.00").wait_for()
    assert pay.is_enabled()

    # Stripe's hosted page is not on this machine: answer for it.
    page.route(
        "https://checkout.stripe.com/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body="<p>Stripe</p>"),
    )
    page.get_by_role("button", name="Pay with card").click()
    page.wait_for_url(re.compile(r"https://checkout\.stripe\.com/c/pay/cs_test_"))
    order = RechargeOrder.objects.get(user=user)
    assert order.amount_minor == 45000
    sent = fake_stripe.creates()[-1].form
    assert sent["line_items[0][price_data][unit_amount]"] == "45000"


def test_without_stripe_the_calculator_prices_the_demo_tiers_and_paying_is_off(page, settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    admin = StaffFactory()  # `make run` signs in as its admin
    call_command("load_demo_discounts")
    sign_in(page, admin)

    for size in SIZES:
        resize(page, size)
        page.goto("/recharge/")
        pay = page.locator("#recharge-pay")
        reason = page.locator("#payments-off")
        assert reason.is_visible()
        assert "Card payments are not set up on this server" in reason.inner_text()
        assert pay.is_visible()
        assert pay.is_disabled()
        ladder = page.locator("#recharge-discounts")
        assert "One top-up of $200.00 or more" in ladder.inner_text()
        assert "Once your top-ups add up to $1,000.00" in ladder.inner_text()

        amount = page.get_by_label("Amount of credit (USD)")
        charge = page.locator("#quote-charge")
        why = page.locator("#quote-why")
        # $10: only the admin's personal discount reaches it.
        assert page.locator("#quote-discount").inner_text() == "3% off"
        assert charge.inner_text() == "$9.70"
        assert "your personal discount" in why.inner_text()
        assert page.locator(".recharge-tier.is-applied").get_attribute("data-tier") == "user"

        amount.fill("250")
        page.locator("#quote-discount").get_by_text("10% off").wait_for()
        assert charge.inner_text() == "$225.00"
        assert "this one top-up is $200.00 or more" in why.inner_text()
        assert "the best one applies, here instead of your personal 3%" in why.inner_text()
        applied = page.locator(".recharge-tier.is-applied")
        assert "One top-up of $200.00 or more" in applied.inner_text()
        assert applied.get_attribute("aria-current") == "true"
        assert page.locator(".recharge-tier[aria-current]").count() == 1
        assert pay.is_disabled()
        look(page, f"recharge-offline-{size}")

        amount.fill("5.001")
        page.locator("#amount-error").get_by_text("at most 2 decimals").wait_for()
        assert amount.get_attribute("aria-invalid") == "true"
        assert pay.is_disabled()
        assert reason.is_visible()

        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= SIZES[size][0], f"{size}: the page is {width}px wide"

        amount.fill("60")
        page.locator("#quote-charge").get_by_text("$57.00").wait_for()
        assert amount.get_attribute("aria-invalid") is None
        assert pay.is_disabled()


def test_leaving_checkout_brings_the_amount_back(page, fake_stripe):
    RechargeTier.objects.create(kind="single", threshold=50_000_000, discount_percent=Decimal(5))
    user = UserFactory()
    sign_in(page, user)
    page.route(
        "https://checkout.stripe.com/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body="<p>Stripe</p>"),
    )
    page.goto("/recharge/")
    page.get_by_label("Amount of credit (USD)").fill("64.25")
    page.locator("#quote-charge").get_by_text("$61.04").wait_for()
    page.get_by_role("button", name="Pay with card").click()
    page.wait_for_url(re.compile(r"https://checkout\.stripe\.com/"))

    # Stripe's "back" link: the cancel URL the order was created with.
    page.goto(fake_stripe.creates()[-1].form["cancel_url"])

    for size in SIZES:
        resize(page, size)
        assert page.locator("#recharge-cancelled").is_visible()
        assert page.get_by_label("Amount of credit (USD)").input_value() == "64.25"
        assert page.locator("#quote-charge").inner_text() == "$61.04"
        assert page.locator("#recharge-pay").is_enabled()
        look(page, f"recharge-cancelled-{size}")
