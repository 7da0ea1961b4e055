"""Fan out one price-change batch to N subscribers through a real SMTP sink.

One Celery worker on Redis (our own queue), an aiosmtpd server on loopback, PostgreSQL.
Measures from enqueuing the batch's fan-out to the last message accepted by the sink,
and checks that every subscriber got exactly one email.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/comet_catalog \\
           REDIS_URL=redis://127.0.0.1:6379/12
    .venv/bin/python bench/pricing_emails/run.py --subscribers 10000
"""

import argparse
import logging
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comet.settings.local")
os.environ.setdefault("DEBUG", "false")

import django  # noqa: E402

django.setup()

from allauth.account.models import EmailAddress  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from accounts.models import User  # noqa: E402
from models_catalog import services  # noqa: E402
from models_catalog.demo_catalog import load_demo_catalog  # noqa: E402
from models_catalog.models import (  # noqa: E402
    CatalogModel,
    PriceChange,
    PriceChangeEmail,
    PriceChangeSubscription,
)
from tests.models_catalog.celery_worker import Worker, send, unique_queue, wait_for  # noqa: E402
from tests.models_catalog.smtp_sink import SinkHandler, start_sink  # noqa: E402

EMAIL_PREFIX = "bench-subscriber-"


def prepare(subscribers: int) -> User:
    call_command("migrate", verbosity=0)
    load_demo_catalog()
    User.objects.filter(email__startswith=EMAIL_PREFIX).delete()
    admin, _ = User.objects.get_or_create(
        email="bench-admin@example.com", defaults={"is_staff": True, "is_superuser": True}
    )
    users = User.objects.bulk_create(
        [User(email=f"{EMAIL_PREFIX}{n}@example.com") for n in range(subscribers)],
        batch_size=2000,
    )
    EmailAddress.objects.bulk_create(
        [EmailAddress(user=u, email=u.email, verified=True, primary=True) for u in users],
        batch_size=2000,
    )
    PriceChangeSubscription.objects.bulk_create(
        [PriceChangeSubscription(user=u, scope="all") for u in users], batch_size=2000
    )
    return admin


def main() -> None:
    # aiosmtpd logs every SMTP command at INFO: that would be the bench's main cost.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool processes")
    parser.add_argument("--chunk-size", type=int, default=250)
    args = parser.parse_args()

    print(f"Database {connection.settings_dict['NAME']}; preparing {args.subscribers} subscribers")
    admin = prepare(args.subscribers)
    model = CatalogModel.objects.get(name="gpt-4o")
    new_ratio = Decimal("1.5") if model.model_ratio != Decimal("1.5") else Decimal("1.25")
    change = services.price_change_record(
        target=model,
        new_prices={"model_ratio": new_ratio},
        reason="Benchmark",
        changed_by=admin,
        source=PriceChange.Source.FORM,
    )
    assert change is not None
    assert change.batch is not None
    services.price_change_batch_close(batch_id=change.batch_id, now=change.batch.closes_at)

    handler = SinkHandler()
    sink = start_sink(handler)
    queue = unique_queue("comet_catalog_bench")
    worker = Worker(
        queue=queue,
        smtp_port=sink.port,
        concurrency=args.concurrency,
        PRICE_CHANGE_EMAIL_CHUNK_SIZE=args.chunk_size,
    )
    try:
        time.sleep(4)  # let the worker connect before the clock starts
        started = time.monotonic()
        send("models_catalog.tasks.price_change_batch_fan_out_task", change.batch_id, queue=queue)
        done = wait_for(
            lambda: len(handler.messages) >= args.subscribers, timeout=600, interval=0.05
        )
        elapsed = time.monotonic() - started
    finally:
        worker.stop()
        sink.stop()

    rows = PriceChangeEmail.objects.filter(batch_id=change.batch_id)
    duplicates = sum(count - 1 for count in handler.recipients.values())
    print(
        f"{'OK' if done else 'TIMED OUT'}: {len(handler.messages)} emails to "
        f"{len(handler.recipients)} subscribers in {elapsed:.1f} s "
        f"({len(handler.messages) / elapsed:.0f}/s); rows sent: "
        f"{rows.filter(status='sent').count()}/{rows.count()}; duplicates: {duplicates}; "
        f"worker concurrency {args.concurrency}, chunk size {args.chunk_size}"
    )
    User.objects.filter(email__startswith=EMAIL_PREFIX).delete()
    sys.exit(0 if done and duplicates == 0 else 1)


if __name__ == "__main__":
    main()
