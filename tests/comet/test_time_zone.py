# ruff: noqa: RUF001 (Chinese text is written with its full-width punctuation)
"""Every time a person reads is in their time zone: the one on their profile, else their
browser's (sent once), else the platform's (README, "Time zones")."""

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core import mail
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.middleware import UserTimeZoneMiddleware
from accounts.models import User
from accounts.timezones import time_zone_names
from billing.models import RechargeOrder
from billing.recharge import order_credit
from billing.tasks import order_receipt_send_task
from logs.models import RequestLog
from logs.selectors import home_usage, spend_by_token, usage_by_model_per_day
from logs.services import new_ip_email_send
from tests.billing.recharge_helpers import new_order
from tests.factories import StaffFactory, UserFactory
from tests.logs.helpers import funded_user_with_token, settle

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
KOLKATA = ZoneInfo("Asia/Kolkata")


def _zone_of(user: User) -> str:
    user.refresh_from_db()
    return user.time_zone


# --- The profile's setting ------------------------------------------------------------


def test_the_profile_offers_every_zone_with_the_platforms_selected_until_one_is_chosen(
    user_client, user
):
    page = user_client.get(reverse("accounts:profile")).content.decode()

    options = re.findall(r'<option value="([^"]+)"', page.split('id="time-zone-choice"')[1])
    assert "Asia/Shanghai" in options
    assert "Europe/Berlin" in options
    assert "UTC" in options
    assert len([name for name in options if name in time_zone_names()]) == len(time_zone_names())
    assert f'<option value="{settings.PLATFORM_TIME_ZONE}" selected>' in page
    assert "Not chosen yet" in page


def test_a_chosen_zone_is_saved_and_used_on_the_next_page(user_client, user):
    response = user_client.post(reverse("accounts:time-zone"), {"time_zone": "Asia/Kolkata"})

    assert response.status_code == 302
    assert _zone_of(user) == "Asia/Kolkata"
    page = user_client.get(reverse("accounts:profile")).content.decode()
    assert '<option value="Asia/Kolkata" selected>' in page
    assert "Time zone saved." in page
    assert "(Asia/Kolkata)" in page


@pytest.mark.parametrize(
    "value",
    [
        "Mars/Olympus_Mons",
        "Asia/Shanghai\x00",
        "\x00",
        "A" * 10_240,
        "Asia/" + "x" * 10_240,
        "../../etc/passwd",
        "localtime",
        "Factory",
        "asia/shanghai",
        "",
    ],
)
def test_a_zone_not_in_the_list_is_a_form_error_and_nothing_changes(user_client, user, value):
    user.time_zone = "Europe/Berlin"
    user.save(update_fields=["time_zone"])

    response = user_client.post(reverse("accounts:time-zone"), {"time_zone": value})

    assert response.status_code == 400
    assert "Choose a time zone from the list, such as Asia/Shanghai." in response.content.decode()
    assert _zone_of(user) == "Europe/Berlin"


def test_the_form_error_is_in_chinese_for_a_chinese_reader(client):
    reader = UserFactory(language="zh-hans")
    client.force_login(reader)

    response = client.post(reverse("accounts:time-zone"), {"time_zone": "Mars/Olympus"})

    assert response.status_code == 400
    assert "请从列表中选择时区，例如 Asia/Shanghai。" in response.content.decode()


def test_signed_out_the_zone_cannot_be_set(client):
    response = client.post(reverse("accounts:time-zone"), {"time_zone": "Asia/Tokyo"})
    assert response.status_code == 302
    assert reverse("account_login") in response["Location"]


# --- The browser's zone, sent once --------------------------------------------------


def test_the_page_loads_the_browser_zone_script_only_while_none_is_saved(user_client, user):
    page = user_client.get(reverse("console:home")).content.decode()
    assert 'src="/static/js/timezone.js"' in page
    assert f'data-time-zone-url="{reverse("accounts:browser-time-zone")}"' in page
    assert "<script>" not in page  # a file: the CSP forbids inline scripts

    user_client.post(reverse("accounts:browser-time-zone"), {"time_zone": "Europe/Berlin"})

    page = user_client.get(reverse("console:home")).content.decode()
    assert "timezone.js" not in page


def test_the_browser_zone_is_stored_once_and_never_over_a_chosen_one(user_client, user):
    url = reverse("accounts:browser-time-zone")

    first = user_client.post(url, {"time_zone": "Europe/Berlin"})
    second = user_client.post(url, {"time_zone": "Asia/Tokyo"})

    assert first.status_code == second.status_code == 204
    assert _zone_of(user) == "Europe/Berlin"

    user_client.post(reverse("accounts:time-zone"), {"time_zone": "Asia/Kolkata"})
    user_client.post(url, {"time_zone": "America/New_York"})
    assert _zone_of(user) == "Asia/Kolkata"


@pytest.mark.parametrize("value", ["Mars/Olympus", "UTC\x00", "A" * 10_240, "", "localtime"])
def test_an_unknown_browser_zone_is_refused_and_nothing_is_stored(user_client, user, value):
    response = user_client.post(reverse("accounts:browser-time-zone"), {"time_zone": value})

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert _zone_of(user) == ""


# --- Which zone a request reads in ---------------------------------------------------


def _zone_seen(path: str, user=None) -> str:
    request = RequestFactory().get(path)
    request.user = user if user is not None else _anonymous()
    seen = {}

    def view(request):
        seen["zone"] = timezone.get_current_timezone_name()
        return HttpResponse()

    UserTimeZoneMiddleware(view)(request)
    # The zone is active only while the request is served.
    assert timezone.get_current_timezone_name() == "UTC"
    return seen["zone"]


def _anonymous():
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()


def test_a_page_reads_in_the_users_zone_else_the_platforms(settings):
    settings.PLATFORM_TIME_ZONE = "America/New_York"
    chosen = UserFactory(time_zone="Asia/Kolkata")
    none_chosen = UserFactory()

    assert _zone_seen("/logs/", chosen) == "Asia/Kolkata"
    assert _zone_seen("/logs/", none_chosen) == "America/New_York"
    assert _zone_seen("/pricing") == "America/New_York"
    # Programs read UTC, ISO 8601 with the offset, whoever asks.
    assert _zone_seen("/api/v1/logs", chosen) == "UTC"
    assert _zone_seen("/user/quota", chosen) == "UTC"


def test_a_stored_zone_no_longer_known_falls_back_to_the_platforms():
    stale = UserFactory()
    User.objects.filter(pk=stale.pk).update(time_zone="Gone/Away")
    stale.refresh_from_db()
    assert _zone_seen("/", stale) == settings.PLATFORM_TIME_ZONE


# --- The Logs page, its filters and its CSV ------------------------------------------


@pytest.fixture
def shanghai_reader(client):
    reader = UserFactory(time_zone="Asia/Shanghai")
    client.force_login(reader)
    return reader


def test_the_logs_page_shows_times_and_reads_a_typed_range_in_the_users_zone(
    client, shanghai_reader
):
    token = funded_user_with_token(shanghai_reader)
    inside = (timezone.now() - timedelta(hours=5)).replace(minute=20, second=0, microsecond=0)
    settle(token, created_at=inside, request_id="inside")
    settle(token, created_at=inside - timedelta(hours=2), request_id="before")
    local = inside.astimezone(SHANGHAI)
    start, end = local.replace(minute=0), local.replace(minute=0) + timedelta(hours=1)

    response = client.get(
        reverse("console:logs"),
        {"range": "custom", "start": f"{start:%Y-%m-%dT%H:%M}", "end": f"{end:%Y-%m-%dT%H:%M}"},
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert f"{local:%Y-%m-%d %H:%M:%S}" in page
    assert f"{local - timedelta(hours=2):%Y-%m-%d %H:%M:%S}" not in page
    assert "1</dd>" in page  # the totals count the one row inside
    assert f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} (Asia/Shanghai)" in page
    assert "From (Asia/Shanghai)" in page
    assert "To (Asia/Shanghai)" in page
    assert "UTC" not in page.split('id="log-results"')[1].split('class="charts"')[0]


def test_a_time_a_dst_change_skips_is_a_clear_filter_error(client):
    reader = UserFactory(time_zone="America/New_York")
    client.force_login(reader)

    response = client.get(reverse("console:logs"), {"range": "custom", "start": "2026-03-08T02:30"})

    assert response.status_code == 400
    assert "couldn’t be interpreted in time zone America/New_York" in response.content.decode()


def test_the_api_reads_a_range_in_utc_or_with_its_offset(client, shanghai_reader):
    token = funded_user_with_token(shanghai_reader)
    moment = (timezone.now() - timedelta(hours=3)).replace(second=0, microsecond=0)
    settle(token, created_at=moment, request_id="one")
    local = moment.astimezone(SHANGHAI)

    def rows(start: str, end: str) -> list:
        response = client.get(reverse("api-logs"), {"range": "custom", "start": start, "end": end})
        assert response.status_code == 200, response.content
        return response.json()["data"]

    around = (moment - timedelta(minutes=1), moment + timedelta(minutes=1))
    assert len(rows(*(f"{edge:%Y-%m-%dT%H:%M}" for edge in around))) == 1
    shifted = [edge.astimezone(SHANGHAI) for edge in around]
    assert len(rows(*(edge.isoformat() for edge in shifted))) == 1
    # The same wall-clock times without the offset are UTC for the API: 8 hours later.
    assert rows(*(f"{edge:%Y-%m-%dT%H:%M}" for edge in shifted)) == []
    assert local.utcoffset() == timedelta(hours=8)


def test_the_logs_page_says_when_retention_runs_in_the_readers_time(client, settings):
    settings.CELERY_TIMEZONE = settings.PLATFORM_TIME_ZONE = "Asia/Shanghai"
    reader = UserFactory(time_zone="Europe/London")
    client.force_login(reader)

    page = client.get(reverse("console:logs")).content.decode()

    # 03:30 in Shanghai is 19:30 in London in winter (UTC+0), 20:30 in summer (UTC+1).
    today = timezone.now().astimezone(ZoneInfo("Europe/London"))
    expected = "19:30" if today.utcoffset() == timedelta(0) else "20:30"
    assert f"removed daily at {expected} your time (Europe/London)" in page


def test_the_csv_writes_each_time_with_its_offset(client, shanghai_reader):
    token = funded_user_with_token(shanghai_reader)
    settle(token, request_id="one")
    row = RequestLog.objects.get(request_id="one")

    console = client.get(reverse("logs:csv"), {"range": "1h"})
    api = client.get(reverse("api-logs-csv"), {"range": "1h"})

    [line] = list(csv.DictReader(io.StringIO(b"".join(console.streaming_content).decode())))
    assert line["created_at"].endswith("+08:00")
    assert datetime.fromisoformat(line["created_at"]) == row.created_at
    [line] = list(csv.DictReader(io.StringIO(b"".join(api.streaming_content).decode())))
    assert line["created_at"].endswith("+00:00")
    assert datetime.fromisoformat(line["created_at"]) == row.created_at


def test_the_json_api_keeps_iso_8601_with_the_offset(client, shanghai_reader):
    token = funded_user_with_token(shanghai_reader)
    settle(token, request_id="one")
    row = RequestLog.objects.get(request_id="one")

    [item] = client.get(reverse("api-logs"), {"range": "1h"}).json()["data"]

    assert re.search(r"(Z|[+-]\d\d:\d\d)$", item["created_at"])
    assert datetime.fromisoformat(item["created_at"]) == row.created_at


# --- "Today" and the per-day charts -----------------------------------------------------


def _yesterday_at(hour: int, minute: int = 0) -> datetime:
    """A UTC moment of yesterday: in the past, within the hours' retention."""
    return (
        (timezone.now() - timedelta(days=1))
        .astimezone(UTC)
        .replace(hour=hour, minute=minute, second=0, microsecond=0)
    )


def test_today_at_1_am_in_utc_plus_8_counts_only_that_local_days_spend(user):
    token = funded_user_with_token(user)
    now = _yesterday_at(17)  # 01:00 the next day in Shanghai
    local_today = now.astimezone(SHANGHAI).date()
    settle(token, cost=700, created_at=now - timedelta(minutes=30))  # 00:30 local: today
    settle(token, cost=300, created_at=now - timedelta(minutes=90))  # 23:30 local: yesterday
    settle(token, cost=50, created_at=now - timedelta(hours=14))  # 11:00 local: yesterday

    usage = home_usage(user_id=user.pk, now=now, zone=SHANGHAI)
    in_utc = home_usage(user_id=user.pk, now=now, zone=UTC)

    assert usage.spend_today == 700
    assert usage.requests_today == 1
    assert usage.spend_per_day["labels"][-1] == local_today.isoformat()
    assert usage.spend_per_day["cost"][-2:] == [350, 700]
    # The same moment in UTC is still the UTC day that holds all three.
    assert in_utc.spend_today == 1050


def test_a_half_hour_zone_splits_the_utc_hour_that_holds_its_midnight_exactly(user):
    token = funded_user_with_token(user)
    now = _yesterday_at(19)  # 00:30 the next day in Kolkata (+05:30): midnight was 18:30 UTC
    settle(token, cost=400, created_at=now.replace(hour=18, minute=10))  # 23:40 local
    settle(token, cost=90, created_at=now.replace(hour=18, minute=50))  # 00:20 local

    usage = home_usage(user_id=user.pk, now=now, zone=KOLKATA)

    assert usage.spend_today == 90
    assert usage.spend_per_day["cost"][-2:] == [400, 90]
    by_model = usage_by_model_per_day(user_id=user.pk, days=7, now=now, zone=KOLKATA)
    assert sum(by_model["cost"][0]) == 490


def test_spend_by_token_counts_the_local_days_only(user):
    token = funded_user_with_token(user, name="main")
    now = _yesterday_at(17)  # 01:00 in Shanghai
    settle(token, cost=700, created_at=now - timedelta(minutes=30))  # today, local
    settle(token, cost=300, created_at=now - timedelta(days=7, minutes=30))  # 8 local days ago

    [row] = spend_by_token(user_id=user.pk, days=7, now=now, zone=SHANGHAI)

    assert (row["name"], row["cost"], row["requests"]) == ("main", 700, 1)


def test_days_past_the_hours_retention_read_the_utc_day_rollup(user, settings):
    settings.LOG_RETENTION_DAYS = 3
    token = funded_user_with_token(user)
    now = _yesterday_at(17)
    old = now - timedelta(days=5)
    settle(token, cost=123, created_at=old)

    series = usage_by_model_per_day(user_id=user.pk, days=7, now=now, zone=SHANGHAI)

    position = series["labels"].index(old.date().isoformat())
    assert series["cost"][0][position] == 123


def test_the_home_page_says_spent_today_in_the_readers_day(client, shanghai_reader):
    token = funded_user_with_token(shanghai_reader)
    settle(token, cost=250_000)

    page = client.get(reverse("console:home")).content.decode()

    assert "Spent today</dt>" in page
    assert "(UTC)" not in page


def test_chart_labels_are_local(client, shanghai_reader, monkeypatch):
    now = _yesterday_at(17, 5)
    monkeypatch.setattr("logs.selectors.timezone.now", lambda: now)

    per_minute = client.get(reverse("logs:chart-per-minute")).json()
    errors = client.get(reverse("logs:chart-errors")).json()
    by_model = client.get(reverse("logs:chart-by-model"), {"days": "7"}).json()

    assert per_minute["labels"][-1] == "01:05"
    assert errors["labels"][-1] == "01:00"
    assert by_model["labels"][-1] == now.astimezone(SHANGHAI).date().isoformat()


# --- Orders ----------------------------------------------------------------------------


def test_order_times_are_local(fake_stripe, client, shanghai_reader):
    order = new_order(shanghai_reader)
    created = datetime(2026, 12, 6, 1, 30, 5, tzinfo=UTC)
    RechargeOrder.objects.filter(pk=order.pk).update(created_at=created)

    listing = client.get(reverse("billing:orders")).content.decode()
    detail = client.get(reverse("billing:order", kwargs={"number": order.number})).content.decode()

    assert "2026-12-06 09:30" in listing
    assert "2026-12-06 09:30:05 (Asia/Shanghai)" in detail
    assert "UTC" not in detail.split('id="order-status"')[1]


# --- Emails ------------------------------------------------------------------------------


def test_the_receipt_shows_times_in_the_recipients_zone_and_names_it(fake_stripe):
    staff = StaffFactory()
    kolkata = UserFactory(time_zone="Asia/Kolkata")
    chinese = UserFactory(language="zh-hans")  # no zone chosen: the platform's
    for person in (kolkata, chinese):
        order = new_order(person)
        order_credit(order_id=order.pk, actor=staff, reason="Checked in Stripe")
        order_receipt_send_task(order.pk)

    first, second = mail.outbox
    for message, person, zone in (
        (first, kolkata, KOLKATA),
        (second, chinese, ZoneInfo(settings.PLATFORM_TIME_ZONE)),
    ):
        order = RechargeOrder.objects.get(user=person)
        credited = order.credited_at.astimezone(zone)
        assert f"{credited:%Y-%m-%d %H:%M} ({zone.key})" in message.body
        assert "UTC" not in message.body
    assert f"到账时间： {order.credited_at.astimezone(SHANGHAI):%Y-%m-%d %H:%M}" in second.body


def test_the_new_ip_email_shows_the_time_in_the_recipients_zone():
    person = UserFactory(time_zone="America/New_York", notify_new_ip=True)
    token = funded_user_with_token(person, name="laptop")
    settle(token, client_ip="203.0.113.7")
    request_id = settle(token, client_ip="198.51.100.99")
    row = RequestLog.objects.get(request_id=request_id)

    assert new_ip_email_send(log_id=row.pk)

    [message] = mail.outbox
    local = row.created_at.astimezone(ZoneInfo("America/New_York"))
    assert f"Time: {local:%Y-%m-%d %H:%M:%S} (America/New_York)" in message.body


def test_rendering_an_email_leaves_no_zone_active():
    person = UserFactory(time_zone="Asia/Kolkata", notify_new_ip=True)
    token = funded_user_with_token(person)
    settle(token, client_ip="203.0.113.7")
    request_id = settle(token, client_ip="198.51.100.99")

    new_ip_email_send(log_id=RequestLog.objects.get(request_id=request_id).pk)

    assert timezone.get_current_timezone_name() == "UTC"
