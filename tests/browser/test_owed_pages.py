"""An account that owes money sees it, at desktop and phone sizes; an admin forgives it."""

import pytest

from billing.models import Account, LedgerEntry
from tests.factories import StaffFactory, UserFactory

from .conftest import SIZES, look, resize, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_what_an_account_owes_is_shown_and_deducted_from_a_top_up(page, fake_stripe):
    user = UserFactory()
    Account.objects.filter(pk=user.pk).update(balance=-1_250_000)
    sign_in(page, user)

    for size in SIZES:
        resize(page, size)
        page.goto("/")
        owed = page.locator("#home-owed")
        assert owed.inner_text() == "$1.25"
        assert owed.is_visible()
        look(page, f"home-owed-{size}")

        page.goto("/recharge/")
        assert "$1.25" in page.locator("#recharge-owed").inner_text()
        page.locator("#quote-owed").wait_for()
        assert page.locator("#quote-owed").inner_text() == "\u2212$1.25"
        assert page.locator("#quote-spendable").inner_text() == "$8.75"
        assert page.locator("#quote-spendable").is_visible()
        look(page, f"recharge-owed-{size}")


def test_an_admin_forgives_a_debt_from_the_account_page(page):
    customer = UserFactory()
    Account.objects.filter(pk=customer.pk).update(balance=-1_250_000)
    sign_in(page, StaffFactory())

    for size in SIZES:
        resize(page, size)
        page.goto(f"/admin/billing/account/{customer.pk}/change/")
        page.get_by_role("link", name="Forgive debt").click()
        page.get_by_text("owes $1.25").wait_for()
        look(page, f"admin-forgive-{size}")
    page.get_by_label("Reason:").fill("Upstream double-counted a stream")
    page.get_by_role("button", name="Forgive $1.25").click()
    page.get_by_text("Forgave $1.25").wait_for()

    assert Account.objects.get(pk=customer.pk).balance == 0
    assert LedgerEntry.objects.get().kind == LedgerEntry.Kind.DEBT_FORGIVEN
