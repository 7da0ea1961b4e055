"""A worker killed mid-send loses nobody and duplicates at most one email.

The bound (see models_catalog/emails.py): one duplicate per send task running when a
worker dies, i.e. at most the worker's concurrency. This worker has concurrency 1.
"""

import time
from decimal import Decimal

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model

from models_catalog import services
from models_catalog.models import PriceChange, PriceChangeEmail, PriceChangeSubscription
from tests.models_catalog.celery_worker import Worker, send, unique_queue, wait_for
from tests.models_catalog.smtp_sink import SinkHandler, start_sink

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored"),
]

SUBSCRIBERS = 300
WORKER_CONCURRENCY = 1
DUPLICATE_BOUND = WORKER_CONCURRENCY  # per killed worker


def make_subscribers(count):
    users = get_user_model().objects.bulk_create(
        [get_user_model()(email=f"kill{n}@example.com") for n in range(count)]
    )
    EmailAddress.objects.bulk_create(
        [EmailAddress(user=u, email=u.email, verified=True, primary=True) for u in users]
    )
    PriceChangeSubscription.objects.bulk_create(
        [PriceChangeSubscription(user=u, scope="all") for u in users]
    )
    return {u.email for u in users}


def test_killed_worker_loses_no_subscriber_and_duplicates_at_most_the_bound(catalog, admin_user):
    addresses = make_subscribers(SUBSCRIBERS)
    change = services.price_change_record(
        target=catalog["gpt-4o"],
        new_prices={"model_ratio": Decimal("1.5")},
        reason="Kill test",
        changed_by=admin_user,
        source=PriceChange.Source.FORM,
    )
    services.price_change_batch_close(batch_id=change.batch_id, now=change.batch.closes_at)
    handler = SinkHandler(delay_seconds=0.01)
    sink = start_sink(handler)
    queue = unique_queue()
    worker_settings = {"PRICE_CHANGE_EMAIL_LEASE_SECONDS": 2, "PRICE_CHANGE_EMAIL_CHUNK_SIZE": 50}
    first = Worker(
        queue=queue, smtp_port=sink.port, concurrency=WORKER_CONCURRENCY, **worker_settings
    )
    second = None
    try:
        send("models_catalog.tasks.price_change_batch_fan_out_task", change.batch_id, queue=queue)
        # Kill it in the middle of sending.
        assert wait_for(lambda: len(handler.messages) >= 80, timeout=60)
        first.kill()
        delivered_before_kill = len(handler.messages)
        assert delivered_before_kill < SUBSCRIBERS

        second = Worker(queue=queue, smtp_port=sink.port, concurrency=1, **worker_settings)
        time.sleep(2.5)  # the dead worker's claims outlive their lease
        # What the beat schedule does every 5 minutes:
        send("models_catalog.tasks.price_change_emails_resume_task", 0, queue=queue)

        def all_sent():
            return not PriceChangeEmail.objects.exclude(status="sent").exists()

        assert wait_for(all_sent, timeout=90, interval=0.5)
    finally:
        first.kill()
        if second is not None:
            second.stop()
        sink.stop()

    assert PriceChangeEmail.objects.filter(status="sent").count() == SUBSCRIBERS
    assert set(handler.recipients) == addresses  # nobody lost
    duplicates = sum(count - 1 for count in handler.recipients.values())
    assert duplicates <= DUPLICATE_BOUND
