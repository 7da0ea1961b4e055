"""Webhook received -> balance credited: latency over N orders, one Celery worker on Redis.

For each order in turn: POST a signed `checkout.session.completed` to the webhook
(Django's handler in this process), which commits the payment and enqueues the
credit task on Redis; one real worker (our own queue) credits it. The latency is
the order's `credited_at` (stamped inside the crediting transaction) minus the
wall-clock time just before the POST. Orders go one at a time, so this is
latency, not throughput. Checks every order has exactly one ledger entry.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/comet_recharge_bench \\
           REDIS_URL=redis://127.0.0.1:6379/12
    .venv/bin/python bench/recharge/run.py --orders 200
"""

import argparse
import logging
import os
import statistics
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
QUEUE = f"comet_recharge_bench_{uuid.uuid4().hex[:8]}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comet.settings.local")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("STRIPE_SECRET_KEY", "sk_test_bench")
os.environ.setdefault("STRIPE_WEBHOOK_SECRET", "whsec_bench")

import django  # noqa: E402

django.setup()

from comet.celery import app  # noqa: E402

# The webhook in this process enqueues the credit task on the bench's own queue.
app.conf.task_default_queue = QUEUE

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from accounts.models import User  # noqa: E402
from billing.models import LedgerEntry, RechargeOrder  # noqa: E402
from billing.recharge import order_create  # noqa: E402
from tests.billing.stripe_fake import event, session_object, sign  # noqa: E402
from tests.models_catalog.celery_worker import Worker, wait_for  # noqa: E402
from tests.models_catalog.smtp_sink import SinkHandler, start_sink  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[index]


def main() -> None:
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    args = parser.parse_args()
    assert not settings.CELERY_TASK_ALWAYS_EAGER, "set REDIS_URL: the bench needs a real worker"

    print(f"Database {connection.settings_dict['NAME']}, queue {QUEUE}")
    call_command("migrate", verbosity=0)
    user, _ = User.objects.get_or_create(email="bench-recharge@example.com")
    orders = [order_create(user=user, credit=10_000_000) for _ in range(args.orders)]
    handler = SinkHandler()
    sink = start_sink(handler)
    worker = Worker(queue=QUEUE, smtp_port=sink.port)
    client = Client(HTTP_HOST="localhost")
    latencies: list[float] = []
    try:
        # Warm up: the worker is ready once it credits one order.
        warm = order_create(user=user, credit=1_000_000)
        payload = event("checkout.session.completed", session_object(warm))
        client.post(
            "/billing/stripe/webhook/",
            data=payload,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=sign(payload, secret=settings.STRIPE_WEBHOOK_SECRET),
        )
        assert wait_for(
            lambda: RechargeOrder.objects.filter(pk=warm.pk, credited_at__isnull=False).exists(),
            timeout=60,
        )
        for order in orders:
            payload = event("checkout.session.completed", session_object(order))
            header = sign(payload, secret=settings.STRIPE_WEBHOOK_SECRET)
            received = datetime.now(tz=UTC)
            response = client.post(
                "/billing/stripe/webhook/",
                data=payload,
                content_type="application/json",
                HTTP_STRIPE_SIGNATURE=header,
            )
            assert response.status_code == 200, response.content
            credited = RechargeOrder.objects.filter(pk=order.pk, credited_at__isnull=False)
            assert wait_for(credited.exists, timeout=30, interval=0.002)
            credited_at = credited.values_list("credited_at", flat=True).get()
            latencies.append((credited_at - received).total_seconds() * 1000)
        # Let the receipts go out before stopping the worker: one per order.
        wait_for(lambda: len(handler.messages) >= args.orders + 1, timeout=60)
    finally:
        worker.stop()
        sink.stop()

    for order in orders:
        assert LedgerEntry.objects.filter(idempotency_key=f"order:{order.number}").count() == 1
    print(f"{len(latencies)} orders")
    print(
        f"webhook received -> credited: p50 {statistics.median(latencies):.1f} ms, "
        f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms, "
        f"mean {statistics.fmean(latencies):.1f} ms"
    )
    print(f"every order credited exactly once; {len(handler.messages)} receipts sent")


if __name__ == "__main__":
    main()
