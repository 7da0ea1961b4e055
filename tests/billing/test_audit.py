"""Freezing an account for a payment dispute, and unfreezing it, each leave one audit row."""

import pytest

from accounts.models import AuditEvent
from billing.models import Account, RechargeOrder
from billing.recharge import Dispute, order_dispute_close, order_dispute_open
from tests.accounts.helpers import audit_rows_then_roll_back
from tests.billing.helpers import fund
from tests.billing.recharge_helpers import new_order

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action


def _disputed_order(user, number: int) -> RechargeOrder:
    order = new_order(user)
    RechargeOrder.objects.filter(pk=order.pk).update(stripe_payment_intent_id=f"pi_{number}")
    return order


def _dispute(number: int, status: str = "needs_response") -> Dispute:
    return Dispute(
        id=f"dp_{number}",
        amount_minor=100,
        status=status,
        payment_intent_id=f"pi_{number}",
        charge_id="",
    )


def _rows() -> list[tuple]:
    return list(
        AuditEvent.objects.order_by("pk").values_list(
            "action", "actor_id", "user_id", "target_type", "target_id", "detail"
        )
    )


def test_a_dispute_freezes_once_and_its_close_unfreezes_once_by_the_system(user):
    fund(user, 1_000_000)
    first = _disputed_order(user, 1)
    _disputed_order(user, 2)

    order_dispute_open(dispute=_dispute(1))
    order_dispute_open(dispute=_dispute(2))  # already frozen: no second row
    order_dispute_close(dispute=_dispute(1, "won"))  # still disputed: stays frozen
    order_dispute_close(dispute=_dispute(2, "won"))

    assert not Account.objects.get(pk=user.pk).is_frozen
    assert _rows() == [
        (
            Action.ACCOUNT_FROZEN,
            None,
            user.pk,
            "billing.account",
            user.pk,
            {"reason": f"Payment dispute dp_1 on order {first.number}"},
        ),
        (
            Action.ACCOUNT_UNFROZEN,
            None,
            user.pk,
            "billing.account",
            user.pk,
            {"reason": f"Payment dispute dp_2 on order {_order_number(2)} closed (won)"},
        ),
    ]


def _order_number(number: int) -> str:
    return RechargeOrder.objects.get(stripe_payment_intent_id=f"pi_{number}").number


@pytest.mark.django_db(transaction=True)
def test_a_freeze_rolled_back_leaves_no_row(user):
    fund(user, 1_000_000)
    _disputed_order(user, 3)

    assert audit_rows_then_roll_back(lambda: order_dispute_open(dispute=_dispute(3))) == 1

    assert not Account.objects.get(pk=user.pk).is_frozen
    assert not AuditEvent.objects.exists()
