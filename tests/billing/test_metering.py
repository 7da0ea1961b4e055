from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Token
from billing.metering import (
    UsageRefused,
    reservation_release_expired,
    usage_release,
    usage_reserve,
    usage_settle,
)
from billing.models import Account, Reservation
from billing.selectors import books_drift
from billing.tasks import reservation_release_expired_task
from logs.models import RequestLog
from tests.billing.helpers import LOG, books_snapshot, fund, make_token
from tokens.services import token_delete, token_set_enabled

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, params=["single_statement", "orm"])
def metering_path(request, monkeypatch):
    """Run every test on PostgreSQL's one-statement path and on the portable ORM path."""
    if request.param == "orm":
        monkeypatch.setattr("billing.metering._single_statement", lambda: False)
    return request.param


@pytest.fixture
def funded(user):
    fund(user, 1_000_000)
    token, _ = make_token(user)
    return user, token


def test_reserve_holds_against_account_and_token_quota(user):
    fund(user, 1_000_000)
    token, _ = make_token(user, quota=500_000)

    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=300_000)

    account = Account.objects.get(user=user)
    token.refresh_from_db()
    assert (account.balance, account.reserved) == (1_000_000, 300_000)
    assert (token.quota_remaining, token.reserved) == (500_000, 300_000)
    reservation = Reservation.objects.get()
    assert (reservation.status, reservation.amount, reservation.token_amount) == (
        "open",
        300_000,
        300_000,
    )
    assert books_drift() == []


def test_an_unlimited_token_is_not_held_on_reserve_but_counts_usage(funded):
    user, token = funded

    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=300_000)
    usage_settle(request_id="r1", cost=1_000, log=LOG)

    token.refresh_from_db()
    assert (token.quota_remaining, token.reserved, token.used) == (None, 0, 1_000)
    assert Reservation.objects.get().token_amount == 0
    assert books_drift() == []


def test_a_quota_given_while_a_request_is_in_flight_never_goes_below_other_holds(user):
    fund(user, 1_000_000)
    token, _ = make_token(user)
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=300_000)
    Token.objects.filter(pk=token.pk).update(quota_remaining=100_000)
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r2", amount=60_000)

    usage_settle(request_id="r1", cost=250_000, log=LOG)

    token.refresh_from_db()
    assert (token.quota_remaining, token.reserved, token.used) == (60_000, 60_000, 250_000)
    assert Account.objects.get(user=user).balance == 750_000
    assert books_drift() == []


def test_settle_charges_the_actual_cost_and_frees_the_rest(funded):
    user, token = funded
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=300_000)

    usage_settle(request_id="r1", cost=120_000, log=LOG)

    account = Account.objects.get(user=user)
    token.refresh_from_db()
    assert (account.balance, account.reserved, account.used, account.request_count) == (
        880_000,
        0,
        120_000,
        1,
    )
    assert (token.reserved, token.used, token.request_count) == (0, 120_000, 1)
    assert token.last_used_ip == "203.0.113.7"
    log = RequestLog.objects.get()
    assert (log.request_id, log.cost, log.user_id, log.token_id) == (
        "r1",
        120_000,
        user.pk,
        token.pk,
    )
    assert books_drift() == []


def test_settle_twice_charges_once(funded):
    user, token = funded
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=300_000)
    usage_settle(request_id="r1", cost=120_000, log=LOG)
    before = books_snapshot()

    usage_settle(request_id="r1", cost=120_000, log=LOG)
    usage_release(request_id="r1")

    assert books_snapshot() == before


def test_release_frees_the_hold_without_charging(funded):
    user, token = funded
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=300_000)

    usage_release(request_id="r1")

    account = Account.objects.get(user=user)
    assert (account.balance, account.reserved, account.used) == (1_000_000, 0, 0)
    assert RequestLog.objects.count() == 0
    assert books_drift() == []


def test_a_reservation_larger_than_the_balance_is_refused_and_changes_nothing(funded):
    user, token = funded
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=900_000)
    before = books_snapshot()

    with pytest.raises(UsageRefused) as refused:
        usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r2", amount=100_001)

    assert refused.value.code == "insufficient_quota"
    assert "balance" in refused.value.message
    assert books_snapshot() == before


def test_a_reservation_above_the_token_quota_is_refused_and_changes_nothing(user):
    fund(user, 1_000_000)
    token, _ = make_token(user, quota=50_000)
    before = books_snapshot()

    with pytest.raises(UsageRefused) as refused:
        usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=50_001)

    assert refused.value.code == "insufficient_quota"
    assert "token's quota" in refused.value.message
    assert books_snapshot() == before


def test_a_query_only_token_cannot_reserve(user):
    fund(user, 1_000_000)
    token, _ = make_token(user, quota=0)
    before = books_snapshot()

    with pytest.raises(UsageRefused, match="query-only"):
        usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=1)

    assert books_snapshot() == before


def test_a_disabled_or_expired_token_cannot_reserve(funded):
    user, token = funded
    token_set_enabled(token=token, is_enabled=False)
    before = books_snapshot()
    with pytest.raises(UsageRefused) as refused:
        usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=1)
    assert refused.value.code == "invalid_api_key"
    assert books_snapshot() == before

    Token.objects.filter(pk=token.pk).update(
        is_enabled=True, expires_at=timezone.now() - timedelta(seconds=1)
    )
    before = books_snapshot()
    with pytest.raises(UsageRefused, match="expired"):
        usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=1)
    assert books_snapshot() == before


def test_another_users_token_cannot_reserve_on_this_account(funded):
    user, _token = funded
    from tests.factories import UserFactory

    other = UserFactory()
    other_token, _ = make_token(other)
    before = books_snapshot()

    with pytest.raises(UsageRefused, match="disabled or was deleted"):
        usage_reserve(token_id=other_token.pk, user_id=user.pk, request_id="r1", amount=1)

    assert books_snapshot() == before


def test_a_reused_request_id_is_refused_and_changes_nothing(funded):
    user, token = funded
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=1_000)
    before = books_snapshot()

    with pytest.raises(UsageRefused) as refused:
        usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=1_000)

    assert refused.value.code == "duplicate_request"
    assert books_snapshot() == before


def test_a_cost_above_the_hold_is_charged_in_full_and_the_overrun_is_owed(
    user, mailoutbox, django_capture_on_commit_callbacks
):
    fund(user, 100_000)
    token, _ = make_token(user)
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=10_000)

    with django_capture_on_commit_callbacks(execute=True):
        usage_settle(request_id="r1", cost=250_000, log=LOG)

    account = Account.objects.get(user=user)
    assert (account.balance, account.reserved, account.used) == (-150_000, 0, 250_000)
    assert account.owed == 150_000
    assert RequestLog.objects.get().cost == 250_000
    assert books_drift() == []
    # The customer is told once, and the account is refused until it is paid back.
    assert len(mailoutbox) == 1
    assert "$0.15" in mailoutbox[0].subject
    with pytest.raises(UsageRefused) as refused:
        usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r2", amount=1)
    assert refused.value.code == "insufficient_quota"
    assert "owes" in refused.value.message


def test_a_cost_above_the_token_quota_is_charged_in_full_and_exhausts_the_quota(user):
    fund(user, 1_000_000)
    token, _ = make_token(user, quota=30_000)
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=10_000)

    usage_settle(request_id="r1", cost=50_000, log=LOG)

    token.refresh_from_db()
    assert (token.quota_remaining, token.reserved, token.used) == (0, 0, 50_000)
    assert Account.objects.get(user=user).balance == 950_000
    assert books_drift() == []


def test_an_abandoned_reservation_is_released_after_its_lease(funded):
    user, token = funded
    usage_reserve(
        token_id=token.pk, user_id=user.pk, request_id="old", amount=200_000, lease_seconds=60
    )
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="new", amount=100_000)
    Reservation.objects.filter(request_id="old").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    released = reservation_release_expired_task.delay().get()

    assert released == 1
    assert Account.objects.get(user=user).reserved == 100_000
    assert Reservation.objects.get(request_id="new").status == Reservation.Status.OPEN
    assert reservation_release_expired() == 0
    assert books_drift() == []


def test_a_settle_after_the_lease_released_the_hold_is_still_charged_in_full(funded):
    user, token = funded
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="late", amount=200_000)
    usage_release(request_id="late")

    usage_settle(request_id="late", cost=150_000, log=LOG)
    usage_settle(request_id="late", cost=150_000, log=LOG)

    account = Account.objects.get(user=user)
    assert (account.balance, account.reserved, account.request_count) == (850_000, 0, 1)
    assert books_drift() == []


def test_settling_an_unknown_request_is_an_error_that_changes_nothing(funded):
    before = books_snapshot()

    with pytest.raises(ValueError, match="No reservation"):
        usage_settle(request_id="never", cost=1, log=LOG)

    assert books_snapshot() == before


def test_the_request_log_keeps_the_token_name_after_the_token_is_deleted(funded):
    user, token = funded
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="r1", amount=1_000)
    usage_settle(request_id="r1", cost=1_000, log=LOG)

    token_delete(token=token)

    log = RequestLog.objects.get()
    assert log.token_id is None
    assert log.token_name == "test"
