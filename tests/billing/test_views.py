import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from billing.models import Account, LedgerEntry
from billing.services import account_adjust
from tests.billing.helpers import books_snapshot, fund
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_home_shows_balance_used_and_request_count(user_client, user):
    fund(user, 12_345_678)
    Account.objects.filter(pk=user.pk).update(used=1_500_000, request_count=1234)

    html = user_client.get("/").content.decode()

    assert "$12.345678" in html
    assert "$1.50" in html
    assert "1,234" in html
    assert reverse("billing:history") in html


def test_home_warns_when_a_dispute_froze_the_account_or_a_refund_made_it_negative(
    user_client, user
):
    fund(user, 1_000_000)
    assert 'id="home-frozen"' not in user_client.get("/").content.decode()
    assert 'id="home-negative"' not in user_client.get("/").content.decode()

    Account.objects.filter(pk=user.pk).update(is_frozen=True)
    html = user_client.get("/").content.decode()
    assert 'id="home-frozen"' in html
    assert "payment dispute" in html

    Account.objects.filter(pk=user.pk).update(is_frozen=False, balance=-250_000)
    html = user_client.get("/").content.decode()
    assert 'id="home-frozen"' not in html
    assert 'id="home-negative"' in html
    assert "owes <strong" in html
    assert "$0.25" in html
    assert reverse("console:recharge") in html


def test_the_recharge_preview_deducts_what_the_account_owes(user_client, user):
    Account.objects.filter(pk=user.pk).update(balance=-1_250_000)

    html = user_client.get(reverse("billing:recharge-preview"), {"amount": "10"}).content.decode()

    assert 'id="quote-owed"' in html
    assert "\u2212$1.25" in html
    # $10 of credit pays the $1.25 back first: $8.75 is left to spend.
    assert "$8.75" in html


def test_the_recharge_preview_of_an_account_that_owes_nothing_shows_no_debt(user_client, user):
    fund(user, 1_000_000)
    html = user_client.get(reverse("billing:recharge-preview"), {"amount": "10"}).content.decode()
    assert 'id="quote-owed"' not in html


def test_billing_history_lists_only_the_users_entries(
    user_client, user, django_assert_max_num_queries
):
    for number in range(3):
        fund(user, 1_000_000 * (number + 1), key=f"h{number}")
    account_adjust(user_id=user.pk, amount=-500_000, reason="Chargeback fee", created_by=None)
    fund(UserFactory(), 9_990_000, key="other")

    with django_assert_max_num_queries(8):
        response = user_client.get(reverse("billing:history"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Chargeback fee" in html
    assert "\u2212$0.50" in html
    assert "$5.50" in html
    assert "$9.99" not in html


def test_billing_history_answers_htmx_with_the_table(user_client, user):
    fund(user, 1_000_000)

    response = user_client.get(reverse("billing:history"), HTTP_HX_REQUEST="true")

    assert b"<html" not in response.content
    assert b"<table" in response.content


def test_account_and_ledger_api(user_client, user):
    fund(user, 2_500_000)

    account = user_client.get("/api/account/").json()
    ledger = user_client.get("/api/ledger/").json()

    assert account["balance"] == "2.500000"
    assert account["request_count"] == 0
    assert [entry["amount"] for entry in ledger] == ["2.500000"]


def test_admin_adjusts_a_balance_with_a_reason(client):
    admin = StaffFactory()
    customer = UserFactory()
    client.force_login(admin)
    url = reverse("admin:billing_account_adjust", args=[customer.pk])

    response = client.post(url, {"amount": "-0", "reason": "typo"})
    assert response.status_code == 200
    response = client.post(url, {"amount": "7.25", "reason": ""})
    assert response.status_code == 200
    assert not LedgerEntry.objects.exists()

    response = client.post(url, {"amount": "7.25", "reason": "Outage credit"})

    assert response.status_code == 302
    entry = LedgerEntry.objects.get()
    assert (entry.amount, entry.reason, entry.created_by) == (7_250_000, "Outage credit", admin)
    assert (
        client.get(reverse("admin:billing_account_change", args=[customer.pk])).status_code == 200
    )


@pytest.mark.parametrize("amount", ["1e309", "1e20", "inf", "nan", "٣", "²", str(10**15)])
def test_an_adjustment_too_large_or_not_plain_digits_is_a_form_error(client, amount):
    client.force_login(StaffFactory())
    customer = UserFactory()
    before = books_snapshot()

    response = client.post(
        reverse("admin:billing_account_adjust", args=[customer.pk]),
        {"amount": amount, "reason": "typo"},
    )

    assert response.status_code == 200
    assert response.context["form"].errors["amount"]
    assert books_snapshot() == before


@pytest.mark.parametrize("object_id", ["abc", "²", "①", "٣", "1e20", "9" * 30])
def test_adjusting_an_account_that_is_not_an_id_is_a_404(client, object_id):
    client.force_login(StaffFactory())
    UserFactory()
    response = client.get(f"/admin/billing/account/{object_id}/adjust/")
    assert response.status_code == 404


@pytest.mark.parametrize("threshold", ["1e309", "1e20"])
def test_a_recharge_tier_threshold_too_large_is_a_form_error(client, threshold):
    from billing.models import RechargeTier

    client.force_login(StaffFactory())
    response = client.post(
        reverse("admin:billing_rechargetier_add"),
        {"kind": "single", "threshold_usd": threshold, "discount_percent": "5"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["threshold_usd"]
    assert not RechargeTier.objects.exists()


def test_minting_codes_worth_too_much_is_a_form_error(client):
    from billing.models import RedemptionCode

    client.force_login(StaffFactory())
    response = client.post(
        reverse("admin:billing_redemptioncode_mint"),
        {"count": "1", "credit_usd": "1e309", "batch": "huge"},
    )
    assert response.status_code == 200
    assert "at most" in response.content.decode()
    assert not RedemptionCode.objects.exists()


def test_adjusting_needs_its_own_permission(client):
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_account"))
    customer = UserFactory()
    client.force_login(viewer)
    before = books_snapshot()

    page = client.get(reverse("admin:billing_account_change", args=[customer.pk]))
    response = client.post(
        reverse("admin:billing_account_adjust", args=[customer.pk]),
        {"amount": "100", "reason": "free money"},
    )

    assert page.status_code == 200
    assert b"Adjust balance" not in page.content
    assert response.status_code == 403
    assert books_snapshot() == before


def test_the_ledger_is_read_only_in_the_admin(client, user):
    fund(user, 1_000)
    client.force_login(StaffFactory())
    entry = LedgerEntry.objects.get()

    page = client.get(reverse("admin:billing_ledgerentry_change", args=[entry.pk]))
    delete = client.post(
        reverse("admin:billing_ledgerentry_delete", args=[entry.pk]), {"post": "yes"}
    )

    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert delete.status_code == 403
    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


def test_home_page_query_count_is_pinned(user_client, user, django_assert_max_num_queries):
    fund(user, 1_000_000)

    with django_assert_max_num_queries(10):
        response = user_client.get("/")

    assert response.status_code == 200


def test_an_admin_forgives_a_debt_only_as_an_audited_ledger_entry(client):
    admin = StaffFactory()
    customer = UserFactory()
    Account.objects.filter(pk=customer.pk).update(balance=-1_250_000, debt_notified_at=None)
    client.force_login(admin)
    url = reverse("admin:billing_account_forgive", args=[customer.pk])
    page = client.get(reverse("admin:billing_account_change", args=[customer.pk]))
    assert b"Forgive debt" in page.content
    assert "$1.25" in client.get(url).content.decode()

    # A reason is required: nothing changes without one
    assert client.post(url, {"reason": " "}).status_code == 200
    assert not LedgerEntry.objects.exists()

    response = client.post(url, {"reason": "Upstream miscounted the tokens"})

    assert response.status_code == 302
    entry = LedgerEntry.objects.get()
    assert (entry.kind, entry.amount, entry.balance_after, entry.created_by) == (
        LedgerEntry.Kind.DEBT_FORGIVEN,
        1_250_000,
        0,
        admin,
    )
    assert Account.objects.get(pk=customer.pk).balance == 0
    # Owing nothing now, there is nothing more to forgive
    assert b"owes nothing" in client.get(url).content
    client.post(url, {"reason": "again"})
    assert LedgerEntry.objects.count() == 1


def test_forgiving_a_debt_needs_the_adjust_permission(client):
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_account"))
    customer = UserFactory()
    Account.objects.filter(pk=customer.pk).update(balance=-1_000)
    client.force_login(viewer)
    before = books_snapshot()

    response = client.post(
        reverse("admin:billing_account_forgive", args=[customer.pk]), {"reason": "please"}
    )

    assert response.status_code == 403
    assert books_snapshot() == before
