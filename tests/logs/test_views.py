"""The Logs page, its API and CSV: only the user's rows, clear refusals, pinned queries."""

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from logs.models import RequestLog
from tests.factories import UserFactory
from tests.logs.helpers import funded_user_with_token, settle

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows(user):
    """The user's 60 requests over the last 50 minutes, and a stranger's 5."""
    token = funded_user_with_token(user, name="main")
    now = timezone.now()
    for index in range(60):
        settle(
            token,
            cost=1000 + index,
            created_at=now - timedelta(seconds=50 * index + 5),
            model=("gpt-4o", "gpt-4o-mini")[index % 2],
            client_ip="198.51.100.1" if index != 7 else "192.0.2.77",
            prompt_tokens=100 + index,
            completion_tokens=10,
        )
    other = UserFactory()
    other_token = funded_user_with_token(other, name="stranger")
    for index in range(5):
        settle(other_token, cost=5, created_at=now - timedelta(seconds=30 * index + 3))
    return token, other, other_token


def _csv(response) -> list[dict]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_the_page_shows_the_users_rows_totals_and_cost_breakdown(user_client, rows):
    response = user_client.get(reverse("console:logs"), {"range": "1h"})
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('class="cost-breakdown"') == 50
    assert "60</dd>" in page  # totals: requests of the whole range, not the page
    mine = RequestLog.objects.filter(user=rows[0].user)
    assert all(row.request_id not in page for row in RequestLog.objects.filter(user=rows[1]))
    assert f"{sum(row.cost for row in mine) / 1_000_000:,.2f}" in page.replace("$", "")
    assert "micro-USD" in page
    assert "Older" in page


def test_a_new_ip_on_the_token_is_highlighted(user_client, rows):
    response = user_client.get(reverse("console:logs"), {"range": "1h"})
    page = response.content.decode()
    # The token was first used from 198.51.100.1; 192.0.2.77 came later and is news
    assert page.count('class="new-ip"') == 1
    assert "New IP" in page


def test_htmx_gets_only_the_results_fragment(user_client, rows):
    response = user_client.get(
        reverse("console:logs"), {"range": "1h", "model": "gpt-4o"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body
    assert body.count('class="cost-breakdown"') == 30


def test_older_and_newer_links_page_through_the_range(user_client, rows):
    first = user_client.get(reverse("console:logs"), {"range": "1h"})
    older = first.context["page"].older
    second = user_client.get(reverse("console:logs"), {"range": "1h", "cursor": older})
    first_ids = [row.pk for row in first.context["page"].rows]
    second_ids = [row.pk for row in second.context["page"].rows]
    assert len(first_ids) == 50
    assert len(second_ids) == 10
    assert not set(first_ids) & set(second_ids)
    assert second.context["page"].older is None
    back = user_client.get(
        reverse("console:logs"), {"range": "1h", "cursor": second.context["page"].newer}
    )
    assert [row.pk for row in back.context["page"].rows] == first_ids


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"range": "custom", "start": "yesterday"}, "Enter the start as a date and time"),
        ({"range": "custom", "start": "2026-13-45T99:99"}, "Enter the start as a date and time"),
        ({"range": "custom"}, "A custom range needs a start"),
        ({"range": "custom", "start": "2000-01-01T00:00"}, "Logs are kept for 90 days"),
        (
            {"range": "custom", "start": "2026-12-01T10:00", "end": "2026-12-01T09:00"},
            "must be after",
        ),
        ({"range": "forever"}, "Choose a time range"),
        ({"token": "999999"}, "You have no token with id 999999"),
        ({"token": "abc"}, "is not a token id"),
        ({"ip": "300.1.2.3"}, "Enter a valid IPv4 or IPv6 address"),
        ({"status": "teapot"}, "Status is"),
        ({"status": "999"}, "Status is"),
        ({"cursor": "not-a-cursor"}, "This page link is not valid"),
        ({"model": "x" * 300}, "at most 200 characters"),
        # str.isdigit() is true for these; int() raised on some, read others as numbers.
        ({"token": "²"}, "is not a token id"),
        ({"token": "①"}, "is not a token id"),
        ({"token": "٣"}, "is not a token id"),
        ({"token": "\uff11"}, "is not a token id"),
        ({"token": "9" * 20}, "is not a token id"),
        ({"status": "²"}, "Status is"),
        ({"status": "①"}, "Status is"),
        ({"status": "٤٠٤"}, "Status is"),
        ({"status": "\uff14\uff10\uff14"}, "Status is"),
    ],
)
def test_bad_filters_get_a_clear_message_everywhere(user_client, rows, query, message):
    page = user_client.get(reverse("console:logs"), query)
    assert page.status_code == 400
    assert message in page.content.decode()
    api = user_client.get(reverse("api-logs"), query)
    assert api.status_code == 400
    assert message in api.json()["error"]["message"]
    export = user_client.get(reverse("logs:csv"), query)
    assert export.status_code == 400
    assert message in export.content.decode()


@pytest.mark.parametrize("name", ["token", "model", "status", "ip", "range", "cursor", "start"])
def test_a_nul_in_a_filter_is_a_400_everywhere_and_reaches_no_query(user_client, rows, name):
    query = {name: "a\x00b"}
    page = user_client.get(reverse("console:logs"), query)
    assert page.status_code == 400
    assert "NUL" in page.content.decode()
    for url in (reverse("logs:totals"), reverse("logs:csv")):
        assert user_client.get(url, query).status_code == 400
    api = user_client.get(reverse("api-logs"), query)
    assert api.status_code == 400
    assert api.json()["error"]["param"] == name
    assert api.json()["error"]["type"] == "invalid_request_error"
    assert user_client.get(reverse("api-logs-csv"), query).status_code == 400


def test_another_users_token_id_is_refused_not_shown(user_client, rows):
    _token, _other, other_token = rows
    response = user_client.get(reverse("api-logs"), {"token": other_token.pk})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "token"


def test_the_api_lists_the_users_rows_with_the_documented_fields(user_client, rows):
    response = user_client.get(reverse("api-logs"), {"range": "1h", "model": "gpt-4o-mini"})
    assert response.status_code == 200
    body = response.json()
    assert len(body["data"]) == 30
    row = body["data"][0]
    for name in (
        "created_at",
        "request_id",
        "token_name",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "ip",
        "status",
        "latency_ms",
    ):
        assert name in row
    newest = (
        RequestLog.objects.filter(user=rows[0].user, model="gpt-4o-mini")
        .order_by("-created_at")
        .first()
    )
    assert row["request_id"] == newest.request_id
    assert row["cost"] == f"{newest.cost / 1_000_000:.6f}"
    assert body["totals"]["requests"] == 30
    assert body["next_cursor"] is None
    stranger_ids = set(RequestLog.objects.filter(user=rows[1]).values_list("request_id", flat=True))
    all_ids = {item["request_id"] for item in user_client.get(reverse("api-logs")).json()["data"]}
    assert not all_ids & stranger_ids


def test_api_cursor_pages(user_client, rows):
    first = user_client.get(reverse("api-logs"), {"range": "1h"}).json()
    second = user_client.get(
        reverse("api-logs"), {"range": "1h", "cursor": first["next_cursor"]}
    ).json()
    assert len(first["data"]) + len(second["data"]) == 60
    assert second["next_cursor"] is None


def test_csv_streams_exactly_the_filtered_rows_of_the_user(user_client, rows, monkeypatch):
    monkeypatch.setattr("logs.export.CHUNK_SIZE", 7)  # several keyset chunks
    for url in (reverse("logs:csv"), reverse("api-logs-csv")):
        response = user_client.get(url, {"range": "1h", "model": "gpt-4o"})
        assert response.status_code == 200
        assert response.streaming
        assert response["Content-Type"] == "text/csv"
        lines = _csv(response)
        expected = RequestLog.objects.filter(user=rows[0].user, model="gpt-4o").order_by(
            "-created_at", "-id"
        )
        assert [line["request_id"] for line in lines] == [row.request_id for row in expected]
        assert lines[0]["cost_usd"] == f"{expected[0].cost / 1_000_000:.6f}"


def test_anonymous_visitors_get_nothing(client, rows):
    assert client.get(reverse("console:logs")).status_code == 302
    assert client.get(reverse("logs:csv")).status_code == 302
    assert client.get(reverse("api-logs")).status_code in (401, 403)
    assert client.get(reverse("api-logs-csv")).status_code in (401, 403)
    assert client.get(reverse("logs:chart-per-minute")).status_code == 302


def _pinned_range() -> tuple[dict, datetime]:
    """Return a fixed custom range whose totals sum five rollup pieces, and a moment in it.

    From 10:17 three days ago to 15:43 yesterday: minutes, hours, one whole day,
    hours, minutes; both ends on whole minutes, so no raw edge.
    """
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=3) + timedelta(hours=10, minutes=17)
    end = today - timedelta(days=1) + timedelta(hours=15, minutes=43)
    query = {
        "range": "custom",
        "start": start.strftime("%Y-%m-%dT%H:%M"),
        "end": end.strftime("%Y-%m-%dT%H:%M"),
    }
    return query, today - timedelta(days=2) + timedelta(hours=12)


def test_query_count_is_pinned_for_first_and_deep_pages(
    user, user_client, django_assert_num_queries
):
    token = funded_user_with_token(user)
    query, moment = _pinned_range()
    for index in range(120):
        settle(token, created_at=moment + timedelta(seconds=index * 20))
    # session, user, the token choices, the page's rows (with their new-IP marks),
    # the totals: five rollup pieces in one UNION ALL after a SET LOCAL, inside
    # a transaction (in a test, a SAVEPOINT / RELEASE pair), and the count of refused
    # requests: 9; served, 7
    with django_assert_num_queries(9):
        first = user_client.get(reverse("console:logs"), query)
    assert len(first.context["page"].rows) == 50
    with django_assert_num_queries(9):
        deep = user_client.get(
            reverse("console:logs"), {**query, "cursor": first.context["page"].older}
        )
    with django_assert_num_queries(9):
        user_client.get(reverse("console:logs"), {**query, "cursor": deep.context["page"].older})
    assert first.context["totals"].requests == 120


def test_query_count_is_pinned_for_an_ip_mixed_filter(user, user_client, django_assert_num_queries):
    token = funded_user_with_token(user)
    query, moment = _pinned_range()
    for index in range(60):
        settle(
            token,
            created_at=moment + timedelta(seconds=index * 20),
            client_ip=("198.51.100.1", "192.0.2.9")[index % 2],
        )
    # IP + model + status "ok" (no refusal counted): 8 (the totals read IP hours and
    # the two partial hours' raw rows in the one UNION ALL)
    mixed = {**query, "ip": "198.51.100.1", "model": "gpt-4o-mini", "status": "ok"}
    with django_assert_num_queries(8):
        response = user_client.get(reverse("console:logs"), mixed)
    assert response.context["totals"].requests == 30


def test_query_count_does_not_grow_with_rows(user, user_client, django_assert_num_queries):
    token = funded_user_with_token(user)
    query, moment = _pinned_range()
    settle(token, created_at=moment)
    with django_assert_num_queries(9):
        user_client.get(reverse("console:logs"), query)
    for index in range(40):
        settle(token, created_at=moment + timedelta(minutes=1 + index))
    with django_assert_num_queries(9):
        response = user_client.get(reverse("console:logs"), query)
    assert len(response.context["page"].rows) == 41


def test_charts_read_the_users_rollups(user_client, rows):
    per_minute = user_client.get(reverse("logs:chart-per-minute"), {"window": "hour"}).json()
    assert len(per_minute["labels"]) == 60
    assert sum(per_minute["datasets"][0]["data"]) == 60
    by_model = user_client.get(reverse("logs:chart-by-model"), {"days": "7"}).json()
    assert {dataset["label"] for dataset in by_model["datasets"]} == {"gpt-4o", "gpt-4o-mini"}
    spend = sum(sum(dataset["data"]) for dataset in by_model["datasets"])
    mine = sum(row.cost for row in RequestLog.objects.filter(user=rows[0].user))
    assert round(spend * 1_000_000) == mine
    requests = user_client.get(
        reverse("logs:chart-by-model"), {"days": "30", "measure": "requests"}
    ).json()
    assert sum(sum(dataset["data"]) for dataset in requests["datasets"]) == 60
    by_token = user_client.get(reverse("logs:chart-by-token"), {"days": "90"}).json()
    assert by_token["labels"] == ["main"]


@pytest.mark.parametrize(
    ("name", "query"),
    [
        ("logs:chart-per-minute", {"window": "week"}),
        ("logs:chart-by-model", {"days": "365"}),
        ("logs:chart-by-model", {"measure": "bytes"}),
        ("logs:chart-by-token", {"days": "-1"}),
        ("logs:chart-by-model", {"days": "²"}),
        ("logs:chart-by-model", {"days": "①"}),
        ("logs:chart-by-model", {"days": "\u0667"}),
        ("logs:chart-by-token", {"days": "²"}),
        ("logs:chart-by-token", {"days": "\uff17"}),
        ("logs:chart-by-token", {"days": "9" * 5000}),
        ("logs:chart-by-token", {"days": "7\x00"}),
        ("logs:chart-per-minute", {"window": "hour\x00"}),
    ],
)
def test_charts_refuse_unknown_periods(user_client, name, query):
    response = user_client.get(reverse(name), query)
    assert response.status_code == 400
    assert "error" in response.json()


def test_the_home_shows_todays_spend_and_rpm(user, user_client, monkeypatch):
    token = funded_user_with_token(user)
    now = timezone.now().astimezone(UTC)
    # The page reads "the last whole minute" of the clock: hold the clock still, so a
    # slow run that crosses a minute boundary reads the same minute the rows are in.
    monkeypatch.setattr("logs.selectors.timezone.now", lambda: now)
    last_minute = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    for second in (1, 20, 40):
        settle(token, cost=250_000, created_at=last_minute + timedelta(seconds=second))
    response = user_client.get(reverse("console:home"))
    page = response.content.decode()
    usage = response.context["usage"]
    assert usage.rpm == 3
    # "Today" is the reader's day (no zone chosen: the platform's).
    zone = ZoneInfo(settings.PLATFORM_TIME_ZONE)
    if last_minute.astimezone(zone).date() == now.astimezone(zone).date():
        assert usage.spend_today == 750_000
        assert "$0.75" in page
    assert 'data-chart-url="/logs/charts/home.json"' in page
    chart = user_client.get(reverse("logs:chart-home")).json()
    assert len(chart["labels"]) == 30
    assert chart["kind"] == "line"
    assert round(sum(chart["datasets"][0]["data"]) * 1_000_000) == 750_000


def test_the_home_draws_spend_per_day_over_30_days_from_the_rollups(user, user_client):
    # Given a customer whose days are UTC's, with requests today, 3 and 29 days ago (inside
    # the line) and 30 days ago (outside)
    user.time_zone = "UTC"
    user.save(update_fields=["time_zone"])
    token = funded_user_with_token(user)
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for days_ago, cost in ((0, 1_000_000), (3, 2_500_000), (29, 300_000), (30, 9_000_000)):
        settle(token, cost=cost, created_at=today - timedelta(days=days_ago) + timedelta(seconds=1))

    # When the home and its chart are read
    with CaptureQueriesContext(connection) as queries:
        chart = user_client.get(reverse("logs:chart-home")).json()
    page = user_client.get(reverse("console:home")).content.decode()

    # Then a line of 30 days, today last, from the day rollups and never the raw rows
    assert not [query for query in queries if "logs_requestlog" in query["sql"]]
    assert chart["kind"] == "line"
    assert len(chart["labels"]) == 30
    assert chart["labels"][-1] == today.strftime("%Y-%m-%d")
    data = chart["datasets"][0]["data"]
    assert (data[-1], data[-4], data[0]) == (1, 2.5, 0.3)
    assert sum(data) == pytest.approx(3.8)
    assert 'id="home-spend-today"><span class="money">$1.00<' in page
    assert 'id="home-spend-30-days"><span class="money">$3.80<' in page


def test_the_openapi_schema_documents_both_endpoints(user_client):
    schema = user_client.get(reverse("api-schema"), {"format": "json"}).json()
    assert "/api/v1/logs" in schema["paths"]
    assert "/api/v1/logs/export.csv" in schema["paths"]
    parameters = {p["name"] for p in schema["paths"]["/api/v1/logs"]["get"]["parameters"]}
    assert {"range", "start", "end", "token", "model", "ip", "status", "cursor"} <= parameters


def test_the_profile_turns_new_ip_emails_on_and_off(user, user_client):
    response = user_client.post(reverse("accounts:new-ip-alerts"), {"enabled": "1"})
    assert response.status_code == 200
    user.refresh_from_db()
    assert user.notify_new_ip is True
    user_client.post(reverse("accounts:new-ip-alerts"), {"enabled": "0"}, HTTP_HX_REQUEST="true")
    user.refresh_from_db()
    assert user.notify_new_ip is False


def test_the_admin_lists_every_users_rows_and_channel_error_rates(client, rows):
    from tests.factories import StaffFactory

    staff = StaffFactory()
    client.force_login(staff)
    url = reverse("admin:logs_requestlog_changelist")
    everyone = client.get(url, {"range": "1h"})
    assert everyone.status_code == 200
    assert len(everyone.context["rows"]) == 50
    assert everyone.context["totals"].requests == 65
    one = client.get(url, {"range": "1h", "user": rows[1].email})
    assert {row.user_id for row, _owner, _breakdown in one.context["rows"]} == {rows[1].pk}
    refused = client.get(url, {"user": "nobody@example.com"})
    assert refused.status_code == 400
    assert "No user" in refused.content.decode()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"user": "²"}, "No user"),
        ({"user": "①"}, "No user"),
        # Not read as user id 3 any more: no user has that email.
        ({"user": "٣"}, "No user"),
        ({"user": "9" * 30}, "No user"),
        ({"token": "²"}, "is not a token id"),
        ({"token": "٣"}, "is not a token id"),
        ({"status": "①"}, "Status is"),
        ({"channel": "²"}, "whole number"),
        ({"user": "a\x00b"}, "NUL"),
        ({"model": "\x00"}, "NUL"),
    ],
)
def test_the_admin_log_filters_refuse_unicode_digits_and_nul(client, rows, query, message):
    from tests.factories import StaffFactory

    client.force_login(StaffFactory())
    response = client.get(reverse("admin:logs_requestlog_changelist"), query)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_a_user_cannot_open_the_admin_logs(user_client):
    response = user_client.get(reverse("admin:logs_requestlog_changelist"))
    assert response.status_code == 302


def test_fixed_range_reads_whole_buckets(user, user_client):
    token = funded_user_with_token(user)
    moment = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(days=1, minutes=3)
    settle(token, cost=42, created_at=moment)
    response = user_client.get(
        reverse("console:logs"),
        {"range": "custom", "start": (moment - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")},
    )
    assert response.context["totals"].cost == 42


def test_ip_and_model_totals_come_exact_with_the_page(user_client, rows):
    # IP and model together: the IP hours answer, so the totals come with the page
    query = {"range": "1h", "ip": "198.51.100.1", "model": "gpt-4o"}
    page = user_client.get(reverse("console:logs"), query)
    assert page.status_code == 200
    expected = RequestLog.objects.filter(
        user=rows[0].user, client_ip="198.51.100.1", model="gpt-4o"
    )
    totals = page.context["totals"]
    assert totals.is_exact
    assert totals.requests == expected.count() > 0
    assert totals.cost == sum(row.cost for row in expected)
    assert 'hx-get="/logs/totals/?' not in page.content.decode()
    # The totals alone answer the same
    alone = user_client.get(reverse("logs:totals"), query)
    assert alone.status_code == 200
    assert alone.context["totals"] == totals
    assert user_client.get(reverse("logs:totals"), {"ip": "x"}).status_code == 400


def test_the_csv_api_accepts_text_csv_and_refuses_in_json(user_client, rows):
    ok = user_client.get(reverse("api-logs-csv"), {"range": "1h"}, HTTP_ACCEPT="text/csv")
    assert ok.status_code == 200
    assert len(_csv(ok)) == 60
    refused = user_client.get(reverse("api-logs-csv"), {"ip": "nope"}, HTTP_ACCEPT="text/csv")
    assert refused.status_code == 400
    assert b"Enter a valid IPv4 or IPv6 address" in refused.content
