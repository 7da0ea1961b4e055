"""The admin's spend report: accounts by daily spend (from the day rollups) and lifetime
recharge, for the "daily consumption over $100 → permanent discount" of seed 000."""

from datetime import UTC, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing.models import UserDiscount
from billing.recharge import order_create, order_credit
from billing.selectors import spend_report
from logs.rollups import bucket_start
from tests.factories import StaffFactory, UserFactory
from tests.logs.helpers import funded_user_with_token, settle

pytestmark = pytest.mark.django_db

DOLLAR = 1_000_000
REPORT_URL = "admin:billing_spendreport_changelist"


def _spender(*, spends: dict[int, int], email: str):
    """A customer who spent `spends[days_ago]` micro-USD on each of these UTC days."""
    user = UserFactory(email=email)
    token = funded_user_with_token(user, amount=5_000 * DOLLAR)
    # Noon of each day: inside it whatever the time of the run.
    today = bucket_start(timezone.now().astimezone(UTC), "day")
    for days_ago, cost in spends.items():
        settle(token, cost=cost, created_at=today - timedelta(days=days_ago, hours=-12))
    return user


@pytest.fixture
def customers():
    staff = StaffFactory()
    whale = _spender(
        email="whale@example.com", spends={0: 5 * DOLLAR, 1: 150 * DOLLAR, 10: 600 * DOLLAR}
    )
    steady = _spender(
        email="steady@example.com",
        spends={2: 1_000 * DOLLAR, 5: 1_000 * DOLLAR, 20: 1_000 * DOLLAR},
    )
    small = _spender(email="small@example.com", spends={1: DOLLAR, 31: 900 * DOLLAR})
    order = order_create(user=whale, credit=200 * DOLLAR)
    order_credit(order_id=order.pk, actor=staff, reason="Checked in Stripe")
    UserDiscount.objects.create(user=steady, discount_percent=8)
    return staff, whale, steady, small


def test_the_report_reads_spend_per_day_and_lifetime_recharge(customers):
    rows = {row.user.email: row for row in spend_report()}

    whale_row = rows["whale@example.com"]
    assert (whale_row.spend_today, whale_row.spend_yesterday) == (5 * DOLLAR, 150 * DOLLAR)
    assert whale_row.spend_period == 750 * DOLLAR  # today is not a whole day yet
    # Funded $5,000 by the test's credit, then the $200 order
    assert whale_row.recharged == 5_200 * DOLLAR
    assert whale_row.credited_orders == 1
    assert whale_row.discount_percent is None
    steady_row = rows["steady@example.com"]
    assert (steady_row.spend_yesterday, steady_row.spend_period) == (0, 3_000 * DOLLAR)
    assert steady_row.discount_percent == 8
    small_row = rows["small@example.com"]
    # A day 31 days ago is outside the 30 whole days
    assert (small_row.spend_yesterday, small_row.spend_period) == (DOLLAR, DOLLAR)


def test_the_admin_page_lists_accounts_by_yesterdays_spend_with_the_figures(client, customers):
    staff, whale, _steady, _small = customers
    client.force_login(staff)

    response = client.get(reverse(REPORT_URL))

    assert response.status_code == 200
    page = response.content.decode()
    order = [page.index(email) for email in ("whale@", "small@", "steady@")]
    assert order == sorted(order)
    assert "$150.00" in page  # whale's yesterday
    assert "$25.00" in page  # whale's 750 / 30
    assert "$100.00" in page  # steady's 3,000 / 30
    assert "$5,200.00" in page
    assert "8.00%" in page
    assert reverse("admin:billing_userdiscount_add") + f"?user={whale.pk}" in page

    # Sorted by the 30-day average, descending
    response = client.get(reverse(REPORT_URL), {"o": "-3"})
    page = response.content.decode()
    assert page.index("steady@") < page.index("whale@") < page.index("small@")

    # The seed's filter: $100 or more a day, yesterday or on average
    response = client.get(reverse(REPORT_URL), {"daily_spend": "100"})
    page = response.content.decode()
    assert "whale@" in page
    assert "steady@" in page
    assert "small@" not in page


def test_the_admin_index_links_the_report(client, customers):
    client.force_login(customers[0])
    assert reverse(REPORT_URL) in client.get(reverse("admin:index")).content.decode()


def test_the_report_page_takes_a_bounded_number_of_queries(client, customers):
    staff = customers[0]
    client.force_login(staff)
    client.get(reverse(REPORT_URL))  # warm the session, content types, permissions
    with CaptureQueriesContext(connection) as few:
        assert client.get(reverse(REPORT_URL)).status_code == 200

    for index in range(20):
        _spender(email=f"more{index}@example.com", spends={1: (index + 1) * DOLLAR})
    with CaptureQueriesContext(connection) as many:
        assert client.get(reverse(REPORT_URL)).status_code == 200

    assert len(many) == len(few)
    assert len(many) <= 8


def test_a_customer_cannot_open_the_report(client, customers):
    _staff, whale, _steady, _small = customers
    client.force_login(whale)
    response = client.get(reverse(REPORT_URL))
    # The admin sends people who are not staff to its sign-in page
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    assert "whale@" not in client.get(reverse(REPORT_URL), follow=True).content.decode()


def test_staff_without_the_accounts_view_permission_is_refused(client, customers):
    client.force_login(StaffFactory(is_superuser=False))
    assert client.get(reverse(REPORT_URL)).status_code == 403


def test_the_report_is_read_only(client, customers):
    staff, whale, _steady, _small = customers
    client.force_login(staff)
    assert client.get(reverse("admin:billing_spendreport_add")).status_code == 403
    response = client.post(reverse("admin:billing_spendreport_delete", args=[whale.pk]))
    assert response.status_code == 403
