"""A real Celery worker on Redis SIGKILLed while crediting: every order credited exactly once.

Each round enqueues a batch of credit tasks for paid orders, kills the worker as
soon as the first credits land (so it dies with a task in flight, often inside
its transaction), starts a new worker and runs the sweeper, as beat does every
minute. The dead worker's unacknowledged task is not redelivered before the
broker's visibility timeout; the sweeper is what recovers it.
"""

from datetime import timedelta

import pytest
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


def test_killed_worker_mid_credit_credits_every_order_exactly_once(settings):
    sink = start_sink(SinkHandler())
    queue = unique_queue("comet_recharge_test")
    worker = Worker(queue=queue, smtp_port=sink.port, COMET_RECHARGE_HOLD_SECONDS="0")
    interrupted = 0
    try:
        for round_number in range(ROUNDS):
            user = UserFactory()
            orders = _paid_orders(user, ORDERS_PER_ROUND)
            ids = [order.pk for order in orders]

            def credited(ids=ids):
                return RechargeOrder.objects.filter(pk__in=ids, ledger_entry__isnull=False).count()

            for order_id in ids:
                send("billing.tasks.order_credit_task", order_id, queue=queue)
            assert wait_for(lambda credited=credited: credited() >= 1, timeout=60, interval=0.01)
            worker.kill()
            at_kill = credited()
            interrupted += at_kill < ORDERS_PER_ROUND

            worker = Worker(queue=queue, smtp_port=sink.port, COMET_RECHARGE_HOLD_SECONDS="0")
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
    # The kill landed in the middle of a batch in (almost) every round.
    assert interrupted >= ROUNDS - 2
    assert LedgerEntry.objects.filter(kind="recharge").count() == ROUNDS * ORDERS_PER_ROUND
