"""A NUL in an address is a clear 400 in each surface's format, before any query.

PostgreSQL refuses NUL in text; raw `request.GET` reads, URL captures and the
admin's own filters passed it to queries and answered 500.
"""

import pytest
from django.test import Client

from billing.models import Account, LedgerEntry, RechargeOrder
from comet.middleware import NUL_MESSAGE
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory())
    return client


def _assert_api_error(response, param):
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == {
        "message": NUL_MESSAGE,
        "type": "invalid_request_error",
        "param": param,
        "code": "null_characters_not_allowed",
    }


@pytest.mark.parametrize(
    ("path", "query", "param"),
    [
        ("/api/v1/pricing", {"vendor": "open\x00ai"}, "vendor"),
        ("/api/v1/pricing", {"kind": "\x00"}, "kind"),
        ("/api/v1/logs", {"model": "\x00"}, "model"),
        ("/api/tokens/", {"page": "1\x00"}, "page"),
        ("/api/ledger/", {"x\x00": "1"}, "x"),
        ("/user/quota", {"key": "sk-\x00"}, "key"),
    ],
)
def test_a_nul_in_an_api_query_is_a_400_in_the_api_format(user_client, path, query, param):
    _assert_api_error(user_client.get(path, query), param)


@pytest.mark.parametrize("path", ["/api/tokens/1%00/", "/api/tokens/%00/"])
def test_a_nul_in_an_api_path_is_a_400_in_the_api_format(user_client, path):
    _assert_api_error(user_client.get(path), None)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/pricing", {"q": "gpt\x00"}),
        ("/pricing", {"vendor": "\x00"}),
        ("/announcements/", {"category": "\x00"}),
        ("/billing/history/", {"page": "\x00"}),
        ("/billing/orders/", {"page": "2\x00"}),
        ("/billing/recharge/preview/", {"amount": "5\x00"}),
        ("/logs/", {"model": "\x00"}),
        ("/billing/orders/R-2026-000001%00/", {}),
        ("/pricing/models/gpt-4o%00", {}),
        ("/pricing/unsubscribe/abc%00/", {}),
    ],
)
def test_a_nul_in_a_console_address_is_the_400_page(user_client, path, query):
    response = user_client.get(path, query)
    assert response.status_code == 400
    assert "Bad request" in response.content.decode()
    assert "NUL" in response.content.decode()


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/admin/billing/rechargeorder/", {"status__exact": "\x00"}),
        ("/admin/billing/rechargeorder/", {"q": "R-\x00"}),
        ("/admin/billing/ledgerentry/", {"kind__exact": "\x00"}),
        ("/admin/billing/reservation/", {"status__exact": "\x00"}),
        ("/admin/billing/redemptioncode/", {"batch__exact": "\x00"}),
        ("/admin/accounts/user/", {"q": "\x00"}),
        ("/admin/accounts/token/", {"q": "\x00"}),
        ("/admin/models_catalog/catalogmodel/", {"kind__exact": "\x00"}),
        ("/admin/relay/channel/", {"status__exact": "\x00"}),
        ("/admin/announcements/announcement/", {"category__exact": "\x00"}),
        ("/admin/billing/rechargeorder/R%00/change/", {}),
    ],
)
def test_a_nul_in_an_admin_search_filter_or_path_is_a_400(staff_client, path, query):
    response = staff_client.get(path, query)
    assert response.status_code == 400


def test_a_post_with_a_nul_in_the_address_changes_nothing(user_client, user):
    books = (list(Account.objects.values_list()), LedgerEntry.objects.count())

    response = user_client.post("/billing/recharge/checkout/?x=%00", {"amount": "10"})

    assert response.status_code == 400
    assert not RechargeOrder.objects.exists()
    assert (list(Account.objects.values_list()), LedgerEntry.objects.count()) == books


def test_addresses_without_nul_are_untouched(user_client):
    assert user_client.get("/pricing", {"q": "gpt"}).status_code == 200
    assert user_client.get("/api/v1/pricing").status_code == 200


@pytest.mark.parametrize(
    "cookie",
    ['sessionid="\\000abcdefghijklmnop"', "sessionid=abc\x00defghijklmnop", "sessionid=²²²²²²²²²"],
)
def test_a_session_cookie_django_never_issued_is_no_session(cookie):
    client = Client()
    response = client.get("/", HTTP_COOKIE=cookie)
    assert response.status_code == 200
    assert "Sign in" in response.content.decode()
