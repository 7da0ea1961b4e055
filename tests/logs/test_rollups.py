"""Rollups are written with each settle and always equal the raw rows' aggregates."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Sum

from billing.grants import grant_return
from billing.selectors import books_drift
from billing.settlement import Settlement, settle_many
from logs.models import (
    AccountDay,
    ChannelHour,
    PlatformDay,
    RequestLog,
    TokenIp,
    UsageDay,
    UsageIpHour,
    UsageMinute,
)
from logs.rollups import rollup_rebuild
from models_catalog.models import PricingGroup
from relay.services import channel_record_failure
from tests.billing.helpers import hold
from tests.factories import UserFactory
from tests.logs.helpers import (
    BASE,
    days_match_raw_rows,
    funded_user_with_token,
    raw_aggregates,
    raw_ip_hours,
    rollup_aggregates,
    rollup_ip_hours,
    settle,
)

UNITS = ("minute", "hour", "day")


@pytest.fixture(params=["single_statement", "orm"])
def metering_path(request, monkeypatch):
    """Both settle paths: PostgreSQL's one statement and the portable ORM one."""
    if request.param == "orm":
        monkeypatch.setattr("billing.settlement.uses_one_statement", lambda: False)
    return request.param


@pytest.mark.django_db
def test_each_settle_adds_to_every_rollup(user, metering_path):
    # Given a token, and requests in two minutes, one of them failed
    token = funded_user_with_token(user)
    moment = datetime(2026, 12, 1, 10, 15, 30, tzinfo=UTC)
    settle(token, cost=120, created_at=moment, prompt_tokens=10, completion_tokens=5)
    settle(token, cost=80, created_at=moment + timedelta(seconds=20), prompt_tokens=4)
    settle(token, cost=0, created_at=moment + timedelta(minutes=1), status_code=502)

    # Then each unit's rollups equal the raw rows' aggregates
    for unit in UNITS:
        assert rollup_aggregates(unit) == raw_aggregates(unit)
    assert rollup_ip_hours() == raw_ip_hours()
    minute = UsageMinute.objects.get(bucket=moment.replace(second=0), status_code__lt=400)
    assert (minute.requests, minute.prompt_tokens, minute.completion_tokens, minute.cost) == (
        2,
        14,
        5,
        200,
    )
    day = UsageDay.objects.get(status_code__gte=400)
    assert day.requests == 1
    assert day.cost == 0
    assert days_match_raw_rows()


@pytest.mark.django_db
def test_platform_and_account_days_sum_by_model_channel_and_group(user, metering_path):
    # Given a user of a pricing group of their own and one of the default group
    group = PricingGroup.objects.create(name="enterprise", display_name="Enterprise")
    user.pricing_group = group
    user.save(update_fields=["pricing_group"])
    token = funded_user_with_token(user)
    other = funded_user_with_token(UserFactory())
    moment = datetime(2026, 12, 1, 23, 59, 50, tzinfo=UTC)
    settle(token, cost=100, created_at=moment, channel_id=4, prompt_tokens=3)
    settle(token, cost=50, created_at=moment, channel_id=4, completion_tokens=2)
    settle(token, cost=0, created_at=moment, channel_id=5, status_code=429)
    settle(other, cost=7, created_at=moment, channel_id=4)
    # and a request no channel answered, the next day (UTC)
    settle(other, cost=0, created_at=moment + timedelta(seconds=20), status_code=502)

    # Then the platform days split by day, model, channel and group (0: default, none)
    day = moment.replace(hour=0, minute=0, second=0)
    assert days_match_raw_rows()
    platform = {
        (row.bucket, row.channel_id, row.pricing_group_id): (row.requests, row.errors, row.cost)
        for row in PlatformDay.objects.all()
    }
    assert platform == {
        (day, 4, group.pk): (2, 0, 150),
        (day, 5, group.pk): (1, 1, 0),
        (day, 4, 0): (1, 0, 7),
        (day + timedelta(days=1), 0, 0): (1, 1, 0),
    }
    # and the account days by account and day
    assert AccountDay.objects.get(user_id=user.pk).cost == 150
    assert AccountDay.objects.filter(user_id=other.user_id).count() == 2


@pytest.mark.django_db
def test_a_late_settle_and_a_refused_settle_keep_rollups_exact(user, metering_path):
    token = funded_user_with_token(user)
    # A request whose grant was freed before it was written (the lease ended) logs once
    grant_id = hold(token, 500)
    grant_return(grant_id=grant_id)
    late = Settlement(grant_id=grant_id, request_id="late", cost=300, log=BASE)
    settle_many([late], lease_seconds=60)
    # Written again (a writer retrying), it changes nothing
    settle_many([late], lease_seconds=60)
    assert RequestLog.objects.count() == 1
    assert books_drift() == []
    assert days_match_raw_rows()
    for unit in UNITS:
        assert rollup_aggregates(unit) == raw_aggregates(unit)
    assert rollup_ip_hours() == raw_ip_hours()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_rollups_equal_raw_aggregates_after_concurrent_settles():
    # Given two users, three tokens, and 8 threads settling 240 requests at once
    # into the same few minute buckets
    users = [UserFactory(), UserFactory()]
    tokens = [funded_user_with_token(users[0], name="a"), funded_user_with_token(users[1])]
    tokens.append(funded_user_with_token(users[0], amount=50_000_000, name="b"))
    start = datetime.now(tz=UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
    barrier = threading.Barrier(8)

    def work(thread: int) -> None:
        barrier.wait(timeout=30)
        try:
            for index in range(30):
                token = tokens[(thread + index) % 3]
                settle(
                    token,
                    cost=10 + index,
                    created_at=start + timedelta(seconds=(thread * 7 + index * 5) % 150),
                    request_id=f"c-{thread}-{index}",
                    model=("gpt-4o", "gpt-4o-mini")[index % 2],
                    client_ip=f"198.51.100.{index % 4}",
                    prompt_tokens=index,
                    completion_tokens=thread,
                    status_code=(200, 200, 429, 502)[index % 4],
                    channel_id=1 + index % 2,
                )
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(work, thread) for thread in range(8)]:
            future.result()

    # Then every rollup equals the raw aggregates, and the books close
    assert RequestLog.objects.count() == 240
    for unit in UNITS:
        assert rollup_aggregates(unit) == raw_aggregates(unit)
    assert rollup_ip_hours() == raw_ip_hours()
    assert sum(TokenIp.objects.values_list("requests", flat=True)) == 240
    # Each channel counts its settled requests that were not upstream failures
    answered = RequestLog.objects.filter(status_code__lt=500).values("channel_id")
    expected = {row["channel_id"]: row["n"] for row in answered.annotate(n=Count("id"))}
    assert expected == {1: 120, 2: 64}
    per_channel = ChannelHour.objects.values("channel_id").annotate(n=Sum("requests"))
    assert {row["channel_id"]: row["n"] for row in per_channel} == expected
    assert days_match_raw_rows()
    assert books_drift() == []


@pytest.mark.django_db
def test_rollup_rebuild_recomputes_what_settles_wrote(user):
    token = funded_user_with_token(user)
    moment = datetime.now(tz=UTC) - timedelta(hours=30)
    for index in range(12):
        settle(
            token,
            cost=index + 1,
            created_at=moment + timedelta(minutes=index * 7),
            client_ip=f"192.0.2.{index % 3}",
            channel_id=3,
        )
    written = {unit: rollup_aggregates(unit) for unit in UNITS}
    ip_hours = rollup_ip_hours()
    first_uses = set(TokenIp.objects.values_list("first_log_id", "is_new_on_token"))
    channel_hours = set(ChannelHour.objects.values_list("bucket", "requests"))
    assert days_match_raw_rows()
    # When a bucket is damaged and the rollups are rebuilt from the raw rows
    UsageMinute.objects.update(cost=0)
    PlatformDay.objects.update(cost=0)
    AccountDay.objects.all().delete()
    UsageIpHour.objects.all().delete()
    TokenIp.objects.all().delete()
    call_command("rollup_rebuild", stdout=open("/dev/null", "w"))  # noqa: SIM115
    # Then they are what the settles had written
    for unit in UNITS:
        assert rollup_aggregates(unit) == written[unit]
    assert rollup_ip_hours() == ip_hours
    assert set(TokenIp.objects.values_list("first_log_id", "is_new_on_token")) == first_uses
    assert set(ChannelHour.objects.values_list("bucket", "requests")) == channel_hours
    assert days_match_raw_rows()
    assert rollup_rebuild(since=datetime.now(tz=UTC)) == 0


@pytest.mark.django_db
def test_a_new_ip_on_a_used_token_is_marked_and_emailed_once(
    user, metering_path, django_capture_on_commit_callbacks
):
    user.notify_new_ip = True
    user.save(update_fields=["notify_new_ip"])
    token = funded_user_with_token(user)
    with django_capture_on_commit_callbacks(execute=True):
        first = settle(token, client_ip="203.0.113.7")
        settle(token, client_ip="203.0.113.7")
        new = settle(token, client_ip="198.51.100.99")
        settle(token, client_ip="198.51.100.99")
    # The token's first address is not news; the second one is, once
    marked = TokenIp.objects.filter(is_new_on_token=True).values_list("first_log_id", flat=True)
    assert list(marked) == [RequestLog.objects.get(request_id=new).pk]
    first_ip = TokenIp.objects.get(first_log_id=RequestLog.objects.get(request_id=first).pk)
    assert first_ip.is_new_on_token is False
    assert len(mail.outbox) == 1
    assert "198.51.100.99" in mail.outbox[0].subject
    assert mail.outbox[0].to == [user.email]
    # Running the task again sends nothing more
    from logs.tasks import new_ip_email_task

    assert new_ip_email_task(RequestLog.objects.get(request_id=new).pk) is False
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_no_new_ip_email_when_the_setting_is_off(user, django_capture_on_commit_callbacks):
    token = funded_user_with_token(user)
    with django_capture_on_commit_callbacks(execute=True):
        settle(token, client_ip="203.0.113.7")
        settle(token, client_ip="198.51.100.99")
    assert TokenIp.objects.filter(is_new_on_token=True).count() == 1
    assert mail.outbox == []


@pytest.mark.django_db
def test_a_failed_channel_attempt_counts_in_its_hour():
    from relay.models import Channel

    channel = Channel.objects.create(
        name="c", kind="openai", base_url="http://127.0.0.1:9/v1", served_models=["m"]
    )
    channel_record_failure(channel_id=channel.pk, error="timeout")
    channel_record_failure(channel_id=channel.pk, error="timeout")
    hour = ChannelHour.objects.get(channel_id=channel.pk)
    assert (hour.requests, hour.failures) == (2, 2)


@pytest.mark.django_db
def test_a_new_ip_email_that_fails_to_send_is_sent_by_the_retry(user, settings):
    from logs.services import new_ip_email_send

    user.notify_new_ip = True
    user.save(update_fields=["notify_new_ip"])
    token = funded_user_with_token(user)
    settle(token, client_ip="203.0.113.7")
    new = RequestLog.objects.get(request_id=settle(token, client_ip="198.51.100.99"))
    # The mail server refuses the connection: the error reaches Celery's retry...
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    with pytest.raises(ConnectionRefusedError):
        new_ip_email_send(log_id=new.pk)
    assert TokenIp.objects.get(first_log_id=new.pk).notified_at is None
    # ...and the retry, with the server back, sends it once
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert new_ip_email_send(log_id=new.pk) is True
    assert new_ip_email_send(log_id=new.pk) is False
    assert len(mail.outbox) == 1
