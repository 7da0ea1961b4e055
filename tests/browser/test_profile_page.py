"""The profile's price-change card saves in place, under the CSP, without leaking a flash."""

import pytest

from models_catalog.demo_catalog import load_demo_catalog
from models_catalog.models import PriceChangeSubscription
from models_catalog.services import price_change_subscription_save
from tests.browser.conftest import SIZES, look, resize, sign_in
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_saving_price_change_emails_swaps_the_card_with_no_console_error_or_leaked_flash(page):
    # The `page` fixture fails the test on any console error, CSP violations included.
    load_demo_catalog()
    user = UserFactory()
    price_change_subscription_save(user=user, scope="all")
    sign_in(page, user)
    page.goto("/profile/")
    card = page.locator("#price-change-emails")
    # Something (an extension, a script) set inline styles on the card's elements:
    # htmx's settle used to copy them back as style attributes, which the CSP refuses.
    page.evaluate(
        "document.querySelectorAll('#price-change-emails [id]')"
        ".forEach(element => { element.style.outline = '1px solid transparent'; })"
    )

    card.get_by_label("Chosen models").check()
    card.get_by_text("Models", exact=True).click()
    card.get_by_label("gpt-4o", exact=True).check()
    card.get_by_role("button", name="Save").click()

    card.get_by_role("status").filter(has_text="Price change emails: saved.").wait_for()
    assert PriceChangeSubscription.objects.get(user=user).scope == "models"
    for size in SIZES:
        resize(page, size)
        look(page, f"profile-saved-{size}")

    # The next full page shows no leftover "saved" message.
    page.goto("/pricing")
    page.get_by_role("heading", name="Pricing").first.wait_for()
    assert page.locator(".messages").count() == 0
    page.goto("/profile/")
    assert page.get_by_text("Price change emails: saved.").count() == 0


def test_recent_activity_lists_the_users_token_changes_at_both_sizes(page):
    from tokens.services import token_create, token_delete, token_set_enabled

    user = UserFactory()
    ci, _key = token_create(user=user, name="ci", actor=user)
    laptop, _key = token_create(user=user, name="laptop-with-a-rather-long-name", actor=user)
    token_set_enabled(token=laptop, is_enabled=False, actor=user)
    token_delete(token=ci, actor=user)
    token_create(user=user, name="made-by-a-command")
    token_create(user=UserFactory(), name="not-mine")
    sign_in(page, user)
    page.goto("/profile/")

    card = page.locator("#recent-activity")
    rows = card.locator("tbody tr")
    assert rows.count() == 5
    assert rows.nth(0).inner_text().split("\t")[1:] == [
        "Token created",
        "made-by-a-command",
        "Comet",
    ]
    assert rows.nth(1).inner_text().split("\t")[1:] == ["Token deleted", "ci", "You"]
    assert card.get_by_text("not-mine").count() == 0
    for size in SIZES:
        resize(page, size)
        # The table fits its card: no column is cut off or scrolls sideways.
        table_width = card.locator("table").evaluate("table => table.scrollWidth")
        assert table_width <= card.evaluate("card => card.clientWidth")
        # and the page fits the window: nothing on it is wider than a phone.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= page.viewport_size["width"], (size, width)
        card.scroll_into_view_if_needed()
        look(page, f"profile-recent-activity-{size}")


def test_the_low_balance_card_saves_in_place_at_both_sizes(page):
    # (Hostile amounts are refused with a 400 the browser logs as a console error: they
    # are tested without a browser, in tests/billing/test_alerts.py.)
    from billing.models import Account
    from tests.billing.helpers import fund

    load_demo_catalog()  # the profile's line card needs the default pricing group
    user = UserFactory()
    fund(user, 20_000_000)
    sign_in(page, user)
    page.goto("/profile/")
    card = page.locator("#low-balance-alert")
    field = card.get_by_label("Email me when my balance falls below (USD)")
    field.fill("5")
    card.get_by_role("button", name="Save").click()
    card.get_by_role("status").filter(has_text="one email when your balance").wait_for()
    assert Account.objects.get(pk=user.pk).low_balance_threshold == 5_000_000
    for size in SIZES:
        resize(page, size)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= page.viewport_size["width"], (size, width)
        card.scroll_into_view_if_needed()
        look(page, f"profile-low-balance-{size}")
