import re
from decimal import Decimal

import pytest

from billing.models import RechargeOrder, RechargeTier
from tests.factories import DEFAULT_PASSWORD, UserFactory

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
    page.get_by_role("button", name="$100", exact=True).click()
    page.locator("#quote-discount").get_by_text("5%").wait_for()
    assert charge.inner_text() == "$95.00"

    amount = page.get_by_label("Amount of credit (USD)")
    amount.fill("12.345")
    page.locator("#amount-error").get_by_text("at most 2 decimals").wait_for()

    amount.fill("499.99")
    page.get_by_text("Top up $500.00 or more for 10% off").wait_for()
    assert charge.inner_text() == "$474.99"

    amount.fill("500")
    page.locator("#quote-charge").get_by_text("$450.00").wait_for()

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
