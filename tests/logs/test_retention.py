"""Retention: settle old rows into the ledger, delete exactly them, keep the books closed."""

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from billing.models import Account, LedgerEntry
from billing.selectors import books_drift
from billing.services import log_retention_run
from billing.tasks import log_retention_task
from logs.models import (
    PrunedTokenUsage,
    RequestLog,
    UsageDay,
    UsageHour,
    UsageIpHour,
    UsageMinute,
)
from tests.factories import UserFactory
from tests.logs.helpers import (
    funded_user_with_token,
    raw_aggregates,
    raw_ip_hours,
    rollup_aggregates,
    rollup_ip_hours,
    settle,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def aged_rows():
    """Two users' requests: some older than the retention period, some within it."""
    now = timezone.now()
    users = [UserFactory(), UserFactory()]
    tokens = [funded_user_with_token(users[0], name="a"), funded_user_with_token(users[1])]
    tokens.append(funded_user_with_token(users[0], amount=5_000_000, name="b"))
    old, recent = [], []
    for index in range(23):
        token = tokens[index % 3]
        age = timedelta(days=settings.LOG_RETENTION_DAYS + 1 + index % 5, minutes=index)
        old.append(settle(token, cost=100 + index, created_at=now - age))
        recent.append(settle(token, cost=7 + index, created_at=now - timedelta(days=index % 4)))
    # One row just inside the cutoff stays
    recent.append(
        settle(
            tokens[0],
            cost=5,
            created_at=now - timedelta(days=settings.LOG_RETENTION_DAYS) + timedelta(minutes=10),
        )
    )
    return now, users, tokens, set(old), set(recent)


def test_retention_deletes_exactly_the_old_rows_and_the_books_still_close(aged_rows):
    now, users, _tokens, old, recent = aged_rows
    balances = dict(Account.objects.values_list("pk", "balance"))
    old_costs = {
        user.pk: sum(
            RequestLog.objects.filter(request_id__in=old, user=user).values_list("cost", flat=True)
        )
        for user in users
    }
    assert books_drift() == []

    # When retention runs with batches smaller than the rows to delete
    result = log_retention_run(now=now, batch_size=4)

    # Then exactly the old rows are gone
    assert set(RequestLog.objects.values_list("request_id", flat=True)) == recent
    assert result.deleted_rows == len(old)
    # Balances did not move, and one usage settlement per user carries the old costs
    assert dict(Account.objects.values_list("pk", "balance")) == balances
    for user in users:
        entry = LedgerEntry.objects.get(account_id=user.pk, kind=LedgerEntry.Kind.USAGE_SETTLEMENT)
        assert entry.amount <= -old_costs[user.pk]
    # Each token's pruned usage is what its deleted rows cost
    pruned = dict(PrunedTokenUsage.objects.values_list("token_id", "cost"))
    assert sum(pruned.values()) == sum(old_costs.values())
    # The books close: reconcile finds no drift
    assert books_drift() == []
    call_command("reconcile", stdout=open("/dev/null", "w"))  # noqa: SIM115
    # Minute and hour rollups before the cutoff are gone; days stay for the charts
    cutoff = result.cutoff
    assert not UsageMinute.objects.filter(bucket__lt=cutoff - timedelta(hours=1)).exists()
    assert not UsageHour.objects.filter(bucket__lt=cutoff - timedelta(hours=1)).exists()
    assert UsageDay.objects.filter(bucket__lt=cutoff - timedelta(days=1)).exists()
    assert not UsageIpHour.objects.filter(bucket__lt=cutoff - timedelta(hours=1)).exists()
    # What remains still matches its rollups
    assert rollup_aggregates("minute") == raw_aggregates("minute")
    kept_ip_hours = {key: value for key, value in rollup_ip_hours().items() if key[2] >= cutoff}
    assert kept_ip_hours == {
        key: value for key, value in raw_ip_hours().items() if key[2] >= cutoff
    }
    assert kept_ip_hours


def test_running_retention_twice_changes_nothing_more(aged_rows):
    now, _users, _tokens, _old, recent = aged_rows
    log_retention_run(now=now, batch_size=5)
    entries = LedgerEntry.objects.count()
    pruned = list(PrunedTokenUsage.objects.order_by("token_id").values_list("token_id", "cost"))
    second = log_retention_run(now=now, batch_size=5)
    assert second.deleted_rows == 0
    assert LedgerEntry.objects.count() == entries
    assert (
        list(PrunedTokenUsage.objects.order_by("token_id").values_list("token_id", "cost"))
        == pruned
    )
    assert set(RequestLog.objects.values_list("request_id", flat=True)) == recent
    assert books_drift() == []


def test_the_task_runs_retention_and_a_deleted_token_keeps_the_books(aged_rows):
    _now, _users, tokens, old, _recent = aged_rows
    tokens[2].delete()  # its rows keep their costs, token_id becomes empty
    assert log_retention_task() == len(old)
    assert books_drift() == []


def test_retention_is_scheduled_in_the_maintenance_window():
    entry = settings.CELERY_BEAT_SCHEDULE["logs-retention"]
    assert entry["task"] == "billing.tasks.log_retention_task"
    assert entry["schedule"].hour == {3}
    assert entry["schedule"].minute == {30}


def test_nothing_old_means_nothing_deleted(user):
    token = funded_user_with_token(user)
    settle(token, created_at=datetime.now(tz=UTC) - timedelta(days=1))
    result = log_retention_run()
    assert result.deleted_rows == 0
    assert RequestLog.objects.count() == 1
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE_SETTLEMENT).exists()
