"""An account that owes money sees it, at desktop and phone sizes; an admin forgives it."""

import os
import re

import pytest

from billing.models import Account, LedgerEntry
from tests.factories import DEFAULT_PASSWORD, StaffFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
# Set to a directory to keep a picture of each page (looked at when a page changes).
SCREENSHOTS = os.environ.get("COMET_SCREENSHOTS")


def _sign_in(page, user) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email:").fill(user.email)
    page.get_by_label("Password:").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign In", exact=True).click()
    page.get_by_role("heading", name=re.compile("Welcome")).wait_for()


def _look(page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)


def _resize(page, size: str) -> None:
    width, height = SIZES[size]
    page.set_viewport_size({"width": width, "height": height})


def test_what_an_account_owes_is_shown_and_deducted_from_a_top_up(page, fake_stripe):
    user = UserFactory()
    Account.objects.filter(pk=user.pk).update(balance=-1_250_000)
    _sign_in(page, user)

    for size in SIZES:
        _resize(page, size)
        page.goto("/")
        owed = page.locator("#home-owed")
        assert owed.inner_text() == "$1.25"
        assert owed.is_visible()
        _look(page, f"home-owed-{size}")

        page.goto("/recharge/")
        assert "$1.25" in page.locator("#recharge-owed").inner_text()
        page.locator("#quote-owed").wait_for()
        assert page.locator("#quote-owed").inner_text() == "\u2212$1.25"
        assert page.locator("#quote-spendable").inner_text() == "$8.75"
        assert page.locator("#quote-spendable").is_visible()
        _look(page, f"recharge-owed-{size}")


def test_an_admin_forgives_a_debt_from_the_account_page(page):
    customer = UserFactory()
    Account.objects.filter(pk=customer.pk).update(balance=-1_250_000)
    _sign_in(page, StaffFactory())

    for size in SIZES:
        _resize(page, size)
        page.goto(f"/admin/billing/account/{customer.pk}/change/")
        page.get_by_role("link", name="Forgive debt").click()
        page.get_by_text("owes $1.25").wait_for()
        _look(page, f"admin-forgive-{size}")
    page.get_by_label("Reason:").fill("Upstream double-counted a stream")
    page.get_by_role("button", name="Forgive $1.25").click()
    page.get_by_text("Forgave $1.25").wait_for()

    assert Account.objects.get(pk=customer.pk).balance == 0
    assert LedgerEntry.objects.get().kind == LedgerEntry.Kind.DEBT_FORGIVEN
