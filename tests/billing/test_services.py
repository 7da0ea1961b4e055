import pytest

from billing.models import Account, LedgerEntry
from billing.selectors import books_drift
from billing.services import (
    IdempotencyConflict,
    InsufficientBalance,
    LedgerError,
    account_adjust,
    account_credit,
    account_debit,
    usage_settlement_record,
)
from tests.billing.helpers import books_snapshot, fund, hold, make_token, spend
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_new_user_gets_an_empty_account():
    user = UserFactory()

    account = Account.objects.get(user=user)

    assert (account.balance, account.reserved, account.used, account.request_count) == (0, 0, 0, 0)


def test_a_new_user_gets_the_configured_welcome_credit_once(settings):
    settings.COMET_SIGNUP_CREDIT_USD = "5"

    user = UserFactory()
    user.save()  # Saving again is not creating again.

    account = Account.objects.get(user=user)
    entry = LedgerEntry.objects.get(account=account)
    assert account.balance == 5_000_000
    assert account.recharged == 0
    assert (entry.kind, entry.amount, entry.idempotency_key) == (
        LedgerEntry.Kind.BONUS,
        5_000_000,
        f"signup:{user.pk}",
    )
    assert books_drift() == []


def test_no_welcome_credit_by_default():
    user = UserFactory()

    assert not LedgerEntry.objects.filter(account__user=user).exists()


def test_credit_records_an_entry_with_the_balance_after(user):
    account_credit(user_id=user.pk, amount=5_000_000, idempotency_key="order:1")
    entry = account_credit(user_id=user.pk, amount=2_500_000, idempotency_key="order:2")

    account = Account.objects.get(user=user)
    assert account.balance == 7_500_000
    assert account.recharged == 7_500_000
    assert entry.balance_after == 7_500_000
    assert entry.kind == LedgerEntry.Kind.RECHARGE
    assert books_drift() == []


def test_the_same_idempotency_key_twice_returns_the_first_entry(user):
    first = account_credit(user_id=user.pk, amount=1_000_000, idempotency_key="order:7")

    again = account_credit(user_id=user.pk, amount=1_000_000, idempotency_key="order:7")

    assert again.pk == first.pk
    assert Account.objects.get(user=user).balance == 1_000_000
    assert LedgerEntry.objects.count() == 1


def test_the_same_key_with_another_amount_is_refused_and_changes_nothing(user):
    account_credit(user_id=user.pk, amount=1_000_000, idempotency_key="order:8")
    before = books_snapshot()

    with pytest.raises(IdempotencyConflict, match="already used"):
        account_credit(user_id=user.pk, amount=2_000_000, idempotency_key="order:8")

    assert books_snapshot() == before


def test_the_same_key_for_another_user_is_refused(user):
    other = UserFactory()
    account_credit(user_id=user.pk, amount=1_000_000, idempotency_key="order:9")
    before = books_snapshot()

    with pytest.raises(IdempotencyConflict):
        account_credit(user_id=other.pk, amount=1_000_000, idempotency_key="order:9")

    assert books_snapshot() == before


def test_a_debit_larger_than_the_free_balance_is_refused_and_changes_nothing(user):
    fund(user, 1_000_000)
    token, _ = make_token(user)
    hold(token, 600_000)
    before = books_snapshot()

    with pytest.raises(InsufficientBalance):
        account_debit(user_id=user.pk, amount=500_000, idempotency_key="refund:re_1")

    assert books_snapshot() == before


def test_a_debit_within_the_free_balance_is_recorded_negative(user):
    fund(user, 1_000_000)

    entry = account_debit(user_id=user.pk, amount=400_000, idempotency_key="refund:re_2")

    assert entry.amount == -400_000
    assert entry.balance_after == 600_000
    assert Account.objects.get(user=user).balance == 600_000


def test_an_adjustment_needs_a_reason_and_keeps_who_made_it(user):
    admin = StaffFactory()
    before = books_snapshot()
    with pytest.raises(LedgerError, match="reason"):
        account_adjust(user_id=user.pk, amount=1_000, reason="  ", created_by=admin)
    assert books_snapshot() == before

    entry = account_adjust(user_id=user.pk, amount=1_000, reason="Goodwill", created_by=admin)

    assert entry.created_by == admin
    assert entry.reason == "Goodwill"
    assert entry.idempotency_key.startswith("adjust:")


def test_ledger_entries_cannot_be_changed_or_deleted(user):
    entry = account_credit(user_id=user.pk, amount=1_000, idempotency_key="order:10")

    entry.amount = 5
    with pytest.raises(ValueError, match="append-only"):
        entry.save()
    with pytest.raises(ValueError, match="append-only"):
        entry.delete()
    assert LedgerEntry.objects.get().amount == 1_000


def test_zero_and_negative_credits_are_refused(user):
    with pytest.raises(ValueError, match="positive"):
        account_credit(user_id=user.pk, amount=0, idempotency_key="x:1")
    with pytest.raises(ValueError, match="positive"):
        account_credit(user_id=user.pk, amount=-5, idempotency_key="x:2")
    assert LedgerEntry.objects.count() == 0


def test_a_usage_settlement_folds_request_costs_and_the_books_still_close(user):
    fund(user, 1_000_000)
    token, _ = make_token(user)
    for _ in range(3):
        spend(token, cost=7_000, held=10_000)
    from logs.models import RequestLog

    through = RequestLog.objects.order_by("id").values_list("id", flat=True)[1]

    entry = usage_settlement_record(user_id=user.pk, through_log_id=through)

    assert entry is not None
    assert entry.amount == -14_000
    assert Account.objects.get(user=user).balance == 1_000_000 - 21_000
    assert books_drift() == []
    assert usage_settlement_record(user_id=user.pk, through_log_id=through) is None
