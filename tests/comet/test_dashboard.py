"""The platform dashboard: staff only, its numbers from the rollups, its queries pinned."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import LedgerEntry, RechargeOrder
from billing.services import account_debit
from comet import dashboard
from logs.models import RequestLog
from logs.selectors import platform_since
from models_catalog.models import PricingGroup
from relay.services import channel_create
from tests.billing.recharge_helpers import new_order
from tests.factories import StaffFactory, UserFactory
from tests.logs.helpers import funded_user_with_token, settle

pytestmark = pytest.mark.django_db

URL = "/admin/dashboard/"


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory())
    return client


@pytest.fixture
def platform():
    """Two accounts in two groups, two channels, requests today and 40 days ago,
    recharges, a refund, a lost dispute and three orders a person should see."""
    enterprise = PricingGroup.objects.create(name="enterprise", display_name="Enterprise line")
    big = UserFactory(email="big@example.com", pricing_group=enterprise)
    small = UserFactory(email="small@example.com")
    big_token = funded_user_with_token(big)  # a $100 recharge each
    small_token = funded_user_with_token(small)
    alpha = channel_create(name="Alpha", kind="mock", served_models=["gpt-4o"])
    beta = channel_create(name="Beta", kind="mock", served_models=["gpt-4o"])
    now = timezone.now()
    settle(big_token, cost=3_000_000, created_at=now, model="gpt-4o", channel_id=alpha.pk)
    settle(big_token, cost=1_000_000, created_at=now, model="gpt-4o", channel_id=beta.pk)
    settle(big_token, cost=0, created_at=now, model="gpt-4o", channel_id=beta.pk, status_code=429)
    settle(small_token, cost=500_000, created_at=now, model="claude-3-5-haiku", channel_id=alpha.pk)
    settle(small_token, cost=0, created_at=now, model="gpt-4o", status_code=502)
    # 40 days ago: outside the 30-day window, inside the 90-day one
    settle(small_token, cost=9_000_000, created_at=now - timedelta(days=40), channel_id=alpha.pk)
    from logs.rollups import channel_attempt_record

    channel_attempt_record(channel_id=beta.pk, failed=True, at=now)
    account_debit(user_id=small.pk, amount=2_000_000, idempotency_key="test:refund")
    account_debit(
        user_id=big.pk,
        amount=5_000_000,
        idempotency_key="test:dispute",
        kind=LedgerEntry.Kind.DISPUTE,
    )
    flagged = new_order(small)
    RechargeOrder.objects.filter(pk=flagged.pk).update(status="needs_attention")
    unpaid = new_order(small)
    paid = new_order(big)
    RechargeOrder.objects.filter(pk=paid.pk).update(status="paid", paid_at=now)
    disputed = new_order(big)
    RechargeOrder.objects.filter(pk=disputed.pk).update(status="disputed")
    return {
        "big": big,
        "small": small,
        "alpha": alpha,
        "beta": beta,
        "flagged": flagged,
        "unpaid": unpaid,
        "paid": paid,
    }


def test_the_dashboard_is_for_staff_only(client):
    # Anonymous: to the sign-in page
    response = client.get(URL)
    assert response.status_code == 302
    assert "/login/" in response["Location"]
    # A customer signed in: the admin's sign-in page too, never the figures
    client.force_login(UserFactory())
    response = client.get(URL)
    assert response.status_code == 302
    assert b"Revenue" not in response.content


def test_the_admin_index_links_the_dashboard(staff_client):
    page = staff_client.get(reverse("admin:index")).content.decode()

    assert f'href="{URL}"' in page


def test_the_panels_show_the_platforms_numbers(staff_client, platform):
    page = staff_client.get(URL).content.decode()

    # Revenue: two $100 recharges, a $2 refund, a $5 dispute
    assert re.search(r'data-revenue="recharges">\s*<[^>]*>\$200\.00<', page)
    assert re.search(r'data-revenue="refunds">\s*<[^>]*>\$2\.00<', page)
    assert re.search(r'data-revenue="disputes">\s*<[^>]*>\$5\.00<', page)
    assert re.search(r'data-revenue="net">\s*<[^>]*>\$193\.00<', page)
    # Spend over 30 days: five requests today, $4.50; the one 40 days ago is not counted
    assert "5 requests, " in page
    assert "$4.50" in page
    # Models, groups, channels, accounts by name
    for name in ("gpt-4o", "claude-3-5-haiku", "Enterprise line", "Alpha", "Beta"):
        assert name in page
    assert "No channel answered" in page
    accounts = page[page.index('id="panel-accounts"') :]
    assert accounts.index("big@example.com") < accounts.index("small@example.com")
    # Beta: two attempts were settled, one more failed and moved on: 1 of 3 failed over
    assert 'data-failover="Beta">33.3%' in page
    # Orders: flagged and paid-but-uncredited need attention; the unpaid one does not
    assert "2 orders need attention" in page
    assert "1 disputed" in page
    assert platform["flagged"].number in page
    assert platform["paid"].number in page
    assert platform["unpaid"].number not in page


def test_the_90_day_window_counts_the_older_request(staff_client, platform):
    page = staff_client.get(URL, {"days": "90"}).content.decode()

    assert "6 requests, " in page
    assert "$13.50" in page
    # Anything else asked for is the default window
    assert "5 requests, " in staff_client.get(URL, {"days": "1e9"}).content.decode()


def test_each_panel_numbers(platform):
    since = platform_since(days=30)

    channels = {row.label: row for row in dashboard.channels_panel(since=since)}
    assert (channels["Alpha"].requests, channels["Alpha"].cost) == (2, 3_500_000)
    assert (channels["Beta"].attempts, channels["Beta"].failures) == (3, 1)
    assert channels["Beta"].error_rate == 0.5
    groups = {row.label: row.cost for row in dashboard.groups_panel(since=since)}
    assert groups == {"Enterprise line": 4_000_000, "Default": 500_000}
    accounts = [(row.label, row.cost) for row in dashboard.accounts_panel(since=since)]
    assert accounts == [("big@example.com", 4_000_000), ("small@example.com", 500_000)]
    models = [(row.label, row.requests) for row in dashboard.models_panel(since=since)]
    assert models == [("gpt-4o", 4), ("claude-3-5-haiku", 1)]
    days = dashboard.days_panel(since=since)
    assert [(row.requests, row.errors, row.cost) for row in days] == [(5, 2, 4_500_000)]


def test_no_panel_reads_the_request_log(staff_client, platform, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert staff_client.get(URL).status_code == 200

    assert not [q for q in queries if RequestLog._meta.db_table in q["sql"]]


@pytest.mark.parametrize(
    ("panel", "queries"),
    [
        (lambda since: dashboard.revenue_panel(since=since), 1),
        (lambda since: dashboard.days_panel(since=since), 1),
        (lambda since: dashboard.models_panel(since=since), 1),
        (lambda since: dashboard.channels_panel(since=since), 3),
        (lambda since: dashboard.groups_panel(since=since), 2),
        (lambda since: dashboard.accounts_panel(since=since), 2),
        (lambda since: dashboard.orders_panel(), 2),
    ],
    ids=["revenue", "days", "models", "channels", "groups", "accounts", "orders"],
)
def test_each_panels_query_count_is_pinned(platform, django_assert_num_queries, panel, queries):
    since = platform_since(days=90, now=datetime.now(tz=UTC))

    with django_assert_num_queries(queries):
        panel(since)


def test_the_whole_page_query_count_is_pinned(staff_client, platform, django_assert_num_queries):
    staff_client.get(URL)  # sessions and the user's first read warm up

    # 12 for the panels, 3 for the admin (session, user, staff MFA check)
    with django_assert_num_queries(15):
        assert staff_client.get(URL, {"days": "90"}).status_code == 200


def test_an_empty_platform_renders(staff_client):
    page = staff_client.get(URL).content.decode()

    assert "No requests in this window." in page
    assert "0 orders need attention" in page
