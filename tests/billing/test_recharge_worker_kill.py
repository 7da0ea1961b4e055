"""A real Celery worker on Redis SIGKILLed while crediting: every order credited exactly once.

Each round enqueues a batch of credit tasks for paid orders and kills the worker
while it credits. In even rounds the test holds the account row's lock, so the
worker is provably inside its crediting transaction (the order row locked, the
account UPDATE waiting) when it dies; in odd rounds it dies as soon as the first
credits land, wherever it is. Then a new worker starts and the sweeper runs, as
beat does every minute. The dead worker's unacknowledged task is not redelivered
before the broker's visibility timeout; the sweeper is what recovers it.
"""

from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from billing.models import Account, LedgerEntry, RechargeOrder
from billing.recharge import order_create
from tests.factories import UserFactory
from tests.models_catalog.celery_worker import Worker, send, unique_queue, wait_for
from tests.models_catalog.smtp_sink import SinkHandler, start_sink

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored"),
]

ROUNDS = 20
ORDERS_PER_ROUND = 15
CREDIT = 7_000_000


def _paid_orders(user, count):
    orders = [order_create(user=user, credit=CREDIT) for _ in range(count)]
    # Paid a minute ago, as the webhook leaves them (the sweeper skips orders paid
    # in the last 30 s, whose own task is still on its way).
    RechargeOrder.objects.filter(pk__in=[o.pk for o in orders]).update(
        status=RechargeOrder.Status.PAID, paid_at=timezone.now() - timedelta(minutes=1)
    )
    return orders


def _lock_account(user_id):
    """Hold the account row's lock in a transaction of our own, so crediting waits on it."""
    blocker = psycopg.connect(**_connection_parameters())
    blocker.execute("SELECT 1 FROM billing_account WHERE user_id = %s FOR UPDATE", [user_id])
    return blocker


def _connection_parameters():
    settings_dict = connection.settings_dict
    return {
        "dbname": settings_dict["NAME"],
        "user": settings_dict["USER"],
        "host": settings_dict["HOST"],
        "port": settings_dict["PORT"],
        "password": settings_dict["PASSWORD"] or None,
    }


def _worker_waits_on_account():
    """True once another backend waits for the account row inside its transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND state = 'active' "
            "AND query LIKE %s",
            ['UPDATE "billing_account"%'],
        )
        return cursor.fetchone()[0] > 0


def test_killed_worker_mid_credit_credits_every_order_exactly_once(settings):
    sink = start_sink(SinkHandler())
    queue = unique_queue("comet_recharge_test")
    worker = Worker(queue=queue, smtp_port=sink.port)
    interrupted = 0
    mid_transaction = 0
    try:
        for round_number in range(ROUNDS):
            user = UserFactory()
            orders = _paid_orders(user, ORDERS_PER_ROUND)
            ids = [order.pk for order in orders]

            def credited(ids=ids):
                return RechargeOrder.objects.filter(pk__in=ids, ledger_entry__isnull=False).count()

            holding_lock = round_number % 2 == 0
            blocker = _lock_account(user.pk) if holding_lock else None
            for order_id in ids:
                send("billing.tasks.order_credit_task", order_id, queue=queue)
            if blocker is not None:
                assert wait_for(_worker_waits_on_account, timeout=60, interval=0.01)
            else:
                assert wait_for(lambda c=credited: c() >= 1, timeout=60, interval=0.01)
            worker.kill()
            at_kill = credited()
            if blocker is not None:
                assert at_kill == 0
                mid_transaction += 1
                blocker.rollback()
                blocker.close()
            interrupted += at_kill < ORDERS_PER_ROUND

            worker = Worker(queue=queue, smtp_port=sink.port)
            send("billing.tasks.recharge_orders_sweep_task", queue=queue)
            assert wait_for(
                lambda credited=credited: credited() == ORDERS_PER_ROUND, timeout=60, interval=0.1
            ), f"round {round_number}: {credited()} of {ORDERS_PER_ROUND} credited"

            for order in orders:
                keys = LedgerEntry.objects.filter(idempotency_key=f"order:{order.number}")
                assert keys.count() == 1
            account = Account.objects.get(pk=user.pk)
            assert account.balance == ORDERS_PER_ROUND * CREDIT
            assert account.recharged == ORDERS_PER_ROUND * CREDIT
    finally:
        worker.stop()
        sink.stop()
    # The kill landed in the middle of a batch in (almost) every round, and inside a
    # crediting transaction in half of them.
    assert interrupted >= ROUNDS - 2
    assert mid_transaction == ROUNDS // 2
    assert LedgerEntry.objects.filter(kind="recharge").count() == ROUNDS * ORDERS_PER_ROUND
