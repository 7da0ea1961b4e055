from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from models_catalog import emails, services
from models_catalog.models import (
    PriceChange,
    PriceChangeBatch,
    PriceChangeEmail,
    PriceChangeSubscription,
    PricingGroup,
)
from models_catalog.tasks import (
    price_change_batch_fan_out_task,
    price_change_batches_close_task,
    price_change_emails_resume_task,
    price_change_emails_send_task,
)
from tests.models_catalog.smtp_sink import SinkHandler, start_sink

pytestmark = pytest.mark.django_db


def change_price(target, admin, **new_prices):
    return services.price_change_record(
        target=target,
        new_prices=new_prices or {"model_ratio": Decimal("1.5")},
        reason="Vendor raised prices",
        changed_by=admin,
        source=PriceChange.Source.FORM,
    )


def end_window():
    PriceChangeBatch.objects.filter(status="open").update(
        closes_at=timezone.now() - timedelta(seconds=1)
    )


@pytest.fixture
def subscribers(catalog, subscribe, unverified_subscription):
    everything = subscribe("all")
    openai = subscribe("vendors", vendors=["openai"])
    o3_only = subscribe("models", models=["o3"])
    anthropic = subscribe("vendors", vendors=["anthropic"])
    gone = subscribe("all")
    services.price_change_subscription_cancel(subscription=gone)
    return {
        "all": everything,
        "openai": openai,
        "o3": o3_only,
        "anthropic": anthropic,
        "gone": gone,
        "unverified": unverified_subscription,
    }


@pytest.fixture
def eager_retries():
    """Let eager tasks retry in-process (propagating would stop at the first Retry)."""
    from comet.celery import app

    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = True


def recipients():
    return sorted(address for message in mail.outbox for address in message.to)


def test_one_email_per_matching_subscriber_after_the_window(catalog, admin_user, subscribers):
    change_price(catalog["gpt-4o"], admin_user)
    change_price(catalog["gpt-4o-mini"], admin_user, completion_ratio=Decimal(5))

    # Within the window: nothing is sent.
    assert price_change_batches_close_task() == 0
    assert mail.outbox == []

    end_window()
    assert price_change_batches_close_task() == 1

    expected = sorted([subscribers["all"].user.email, subscribers["openai"].user.email])
    assert recipients() == expected
    message = mail.outbox[0]
    assert "Input / 1M tokens: $2.50 -> $3.00" in message.body
    assert "Output / 1M tokens: $0.60 -> $0.75" in message.body
    assert "Vendor raised prices" in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert "$2.50" in html
    assert "$3.00" in html
    subscription = PriceChangeSubscription.objects.get(user__email=message.to[0])
    assert (
        message.extra_headers["List-Unsubscribe"] == f"<{emails.unsubscribe_url(subscription.pk)}>"
    )
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert emails.unsubscribe_url(subscription.pk) in message.body
    assert PriceChangeEmail.objects.filter(status="sent").count() == 2


def test_a_subscriber_of_some_models_gets_only_those(catalog, admin_user, subscribers):
    change_price(catalog["gpt-4o"], admin_user)
    change_price(catalog["o3"], admin_user, model_ratio=Decimal(2))
    end_window()

    price_change_batches_close_task()

    o3_email = subscribers["o3"].user.email
    [o3_message] = [message for message in mail.outbox if message.to == [o3_email]]
    assert "o3" in o3_message.body
    assert "gpt-4o" not in o3_message.body
    [everything] = [m for m in mail.outbox if m.to == [subscribers["all"].user.email]]
    assert "o3" in everything.body
    assert "gpt-4o" in everything.body
    assert len(mail.outbox) == 3  # all, openai, o3; not anthropic, gone or unverified


def test_sending_again_sends_nothing_twice(catalog, admin_user, subscribers):
    change_price(catalog["gpt-4o"], admin_user)
    end_window()
    price_change_batches_close_task()
    batch = PriceChangeBatch.objects.get()
    sent = len(mail.outbox)

    price_change_batch_fan_out_task(batch.pk)
    price_change_emails_send_task(list(PriceChangeEmail.objects.values_list("pk", flat=True)))
    price_change_emails_resume_task(older_than_seconds=0)
    assert price_change_batches_close_task() == 0

    assert len(mail.outbox) == sent == 2
    assert PriceChangeEmail.objects.count() == 2


def test_a_group_change_emails_the_members_of_that_group(catalog, admin_user, subscribe):
    enterprise = PricingGroup.objects.get(name="enterprise")
    member = subscribe("models", models=["o3"], pricing_group=enterprise)
    default_member = subscribe("models", models=["o3"])

    change_price(enterprise, admin_user, group_ratio=Decimal("0.85"))
    end_window()
    price_change_batches_close_task()

    assert recipients() == [member.user.email]
    assert "Group multiplier: x0.9 -> x0.85" in mail.outbox[0].body
    assert default_member.user.email not in recipients()


def test_a_subscriber_who_unsubscribes_before_sending_is_skipped(catalog, admin_user, subscribe):
    leaving = subscribe("all")
    staying = subscribe("all")
    change_price(catalog["gpt-4o"], admin_user)
    end_window()
    batch = PriceChangeBatch.objects.get()
    services.price_change_batch_close(batch_id=batch.pk)
    emails.price_change_emails_create(batch=batch)

    services.price_change_subscription_cancel(subscription=leaving)
    price_change_emails_send_task(list(PriceChangeEmail.objects.values_list("pk", flat=True)))

    assert recipients() == [staying.user.email]
    assert PriceChangeEmail.objects.get(subscription=leaving).status == "skipped"


def test_smtp_refusals_are_retried_and_then_delivered_once(
    catalog, admin_user, subscribe, settings, eager_retries
):
    handler = SinkHandler(refuse_first=1)
    sink = start_sink(handler)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", sink.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    first, second = subscribe("all"), subscribe("all")
    try:
        change_price(catalog["gpt-4o"], admin_user)
        end_window()
        price_change_batches_close_task()  # eager: the retry runs at once
    finally:
        sink.stop()

    assert handler.attempts == 3  # one refused, then both delivered
    assert handler.recipients == {first.user.email: 1, second.user.email: 1}
    rows = PriceChangeEmail.objects.all()
    assert {row.status for row in rows} == {"sent"}
    assert max(row.attempts for row in rows) == 2


def test_smtp_down_marks_the_emails_failed_after_the_last_retry(
    catalog, admin_user, subscribe, settings, eager_retries
):
    from tests.models_catalog.smtp_sink import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nobody listens
    settings.EMAIL_TIMEOUT = 2
    subscribe("all")
    change_price(catalog["gpt-4o"], admin_user)
    end_window()

    price_change_batches_close_task()

    row = PriceChangeEmail.objects.get()
    assert row.status == "failed"
    assert row.attempts == 7  # the first try and six retries
    assert "refused" in row.last_error.lower()


def test_a_worker_that_died_mid_send_leaves_its_emails_claimable_after_the_lease(
    catalog, admin_user, subscribe, settings
):
    settings.PRICE_CHANGE_EMAIL_LEASE_SECONDS = 60
    subscriber = subscribe("all")
    change_price(catalog["gpt-4o"], admin_user)
    end_window()
    batch = PriceChangeBatch.objects.get()
    services.price_change_batch_close(batch_id=batch.pk)
    emails.price_change_emails_create(batch=batch)
    PriceChangeBatch.objects.update(fanned_out_at=timezone.now())
    row = PriceChangeEmail.objects.get()
    # A worker claimed the row, then died before sending.
    PriceChangeEmail.objects.filter(pk=row.pk).update(status="sending", claimed_at=timezone.now())

    # Within the lease nobody sends it (the worker might still be alive).
    assert emails.price_change_emails_send(email_ids=[row.pk]) == 0
    assert mail.outbox == []

    PriceChangeEmail.objects.filter(pk=row.pk).update(
        claimed_at=timezone.now() - timedelta(seconds=61)
    )
    assert price_change_emails_resume_task(older_than_seconds=0) == 1
    assert recipients() == [subscriber.user.email]


def test_unsubscribe_link_works_logged_out(client, catalog, subscribe):
    subscription = subscribe("all")
    url = reverse("models_catalog:unsubscribe", args=[emails.unsubscribe_token(subscription.pk)])

    page = client.get(url)
    assert page.status_code == 200
    assert b"Unsubscribe" in page.content
    subscription.refresh_from_db()
    assert subscription.is_active  # a GET (a link scanner) changes nothing

    response = client.post(url, {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    assert b"You are unsubscribed" in response.content
    subscription.refresh_from_db()
    assert not subscription.is_active


def test_a_forged_unsubscribe_link_is_refused(client, catalog, subscribe):
    subscription = subscribe("all")
    forged = emails.unsubscribe_token(subscription.pk)[:-2] + "xx"

    response = client.post(reverse("models_catalog:unsubscribe", args=[forged]))

    assert response.status_code == 400
    subscription.refresh_from_db()
    assert subscription.is_active


def test_a_batch_closed_by_a_worker_that_died_before_fan_out_is_fanned_out_later(
    catalog, admin_user, subscribe
):
    subscriber = subscribe("all")
    change_price(catalog["gpt-4o"], admin_user)
    end_window()
    batch = PriceChangeBatch.objects.get()
    # The close task committed, then its worker died before enqueuing the fan-out.
    services.price_change_batch_close(batch_id=batch.pk)
    assert not PriceChangeEmail.objects.exists()

    price_change_emails_resume_task(older_than_seconds=0)

    assert recipients() == [subscriber.user.email]
    batch.refresh_from_db()
    assert batch.fanned_out_at is not None
    price_change_emails_resume_task(older_than_seconds=0)
    assert len(mail.outbox) == 1


def test_a_scheduled_change_is_emailed_before_it_takes_effect(catalog, admin_user, subscribe):
    subscriber = subscribe("all")
    at = timezone.now() + timedelta(hours=3)
    services.price_change_record(
        target=catalog["gpt-4o"],
        new_prices={"model_ratio": Decimal(2)},
        reason="Announced increase",
        changed_by=admin_user,
        source=PriceChange.Source.FORM,
        effective_at=at,
    )
    end_window()

    price_change_batches_close_task()

    [message] = mail.outbox
    assert message.to == [subscriber.user.email]
    # In the subscriber's zone (none chosen: the platform's), named.
    local = at.astimezone(ZoneInfo(settings.PLATFORM_TIME_ZONE))
    assert f"takes effect {local:%Y-%m-%d %H:%M} ({settings.PLATFORM_TIME_ZONE})" in message.body
    catalog["gpt-4o"].refresh_from_db()
    assert catalog["gpt-4o"].model_ratio == Decimal("1.25")  # not yet
