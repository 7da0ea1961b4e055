"""Orders in a given state, for the recharge tests."""

from accounts.models import User
from billing.models import LedgerEntry, RechargeOrder
from billing.recharge import order_create, order_session_attach


def new_order(user: User, credit: int = 10_000_000) -> RechargeOrder:
    """A pending order with a Checkout Session id, as the checkout view leaves it."""
    order = order_create(user=user, credit=credit)
    order_session_attach(order_id=order.pk, session_id=f"cs_test_{order.number}")
    order.refresh_from_db()
    return order


def credits_of(order: RechargeOrder) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(idempotency_key=f"order:{order.number}"))


def balance_of(user: User) -> int:
    from billing.models import Account

    return Account.objects.get(pk=user.pk).balance
