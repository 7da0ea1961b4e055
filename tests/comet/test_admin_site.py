"""The admin index: one Accounts section; and money in dollars wherever the admin shows it."""

import re

import pytest
from django.urls import reverse

from billing.models import LedgerEntry, Reservation
from logs.models import RequestLog
from tests.billing.helpers import fund, make_token
from tests.factories import StaffFactory, UserFactory
from tests.logs.helpers import settle

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory())
    return client


def sections(html: str) -> dict[str, list[str]]:
    """Return {section name: model names} of the index's app list."""
    found: dict[str, list[str]] = {}
    for caption, body in re.findall(
        r'<caption>\s*<a [^>]*class="section"[^>]*>([^<]+)</a>\s*</caption>(.*?)</table>',
        html,
        re.S,
    ):
        found.setdefault(caption.strip(), []).extend(
            name.strip()
            for name in re.findall(r'<th scope="row"[^>]*>\s*<a [^>]*>([^<]+)</a>', body)
        )
    return found


def test_the_index_gathers_everything_about_an_account_in_one_section(staff_client):
    page = staff_client.get(reverse("admin:index")).content.decode()

    found = sections(page)
    assert page.count('class="section"') == len(found)
    assert found["Accounts"] == [
        "Users",
        "Balances",
        "API tokens",
        "User discounts",
        "Email addresses",
        "Two-factor authenticators",
        "Staff permission groups",
        "Audit log",
    ]
    assert "Authentication and Authorization" not in found
    assert "MFA" not in found
    assert "Accounts" not in found["Billing"]
    assert "Ledger entries" in found["Billing"]
    assert "Channels" in found["Relay"]


@pytest.mark.parametrize("app_label", ["accounts", "auth", "mfa", "account", "billing"])
def test_an_apps_own_page_still_opens_and_shows_its_models(staff_client, app_label):
    response = staff_client.get(reverse("admin:app_list", args=[app_label]))

    assert response.status_code == 200
    shown = [
        model["model"]._meta.app_label
        for app in response.context["app_list"]
        for model in app["models"]
    ]
    assert app_label in shown


def test_a_staff_member_sees_only_the_models_they_may_view(client):
    from django.contrib.auth.models import Permission

    staff = StaffFactory(is_superuser=False)
    staff.user_permissions.add(Permission.objects.get(codename="view_token"))
    client.force_login(staff)

    found = sections(client.get(reverse("admin:index")).content.decode())

    assert found == {"Accounts": ["API tokens"]}


def test_money_reads_in_dollars_in_the_admin_lists_and_rows(staff_client):
    customer = UserFactory()
    fund(customer, 7_250_000, key="admin-dollars")
    token, _key = make_token(customer, quota=3_000_000)
    settle(token, cost=1_237)
    entry = LedgerEntry.objects.get()
    log = RequestLog.objects.get()

    ledger = staff_client.get(reverse("admin:billing_ledgerentry_changelist")).content.decode()
    assert "$7.25" in ledger
    assert "7250000" not in ledger
    row = staff_client.get(reverse("admin:billing_ledgerentry_change", args=[entry.pk]))
    assert "$7.25" in row.content.decode()
    assert "7250000" not in row.content.decode()

    account = staff_client.get(reverse("admin:billing_account_change", args=[customer.pk]))
    assert "$7.248763" in account.content.decode()  # the exact balance after the request
    assert "$0.001237" in account.content.decode()  # used

    tokens = staff_client.get(reverse("admin:accounts_token_changelist")).content.decode()
    assert "$0.001237" in tokens
    token_page = staff_client.get(reverse("admin:accounts_token_change", args=[token.pk]))
    assert "$2.998763" in token_page.content.decode()  # the quota left
    assert "2998763" not in token_page.content.decode()

    log_page = staff_client.get(reverse("admin:logs_requestlog_change", args=[log.pk]))
    assert "$0.001237" in log_page.content.decode()
    assert ">1237<" not in log_page.content.decode()
    assert not Reservation.objects.filter(status="open").exists()
