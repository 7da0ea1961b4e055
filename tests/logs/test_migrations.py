"""Migration 0006 re-keys the IP hours and recomputes them from the raw rows, both ways."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from logs.models import RequestLog
from tests.logs.helpers import funded_user_with_token, raw_ip_hours, rollup_ip_hours, settle

BEFORE = [("logs", "0005_rollups_recompute")]
AFTER = [("logs", "0006_usageiphour_by_token_model_status")]


def _migrate(target) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


def _migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    _migrate(executor.loader.graph.leaf_nodes("logs"))


def _ip_hours_by_ip() -> dict:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_id, client_ip, bucket, requests, prompt_tokens, completion_tokens, cost "
            "FROM logs_usageiphour"
        )
        return {tuple(row[:3]): tuple(row[3:]) for row in cursor.fetchall()}


def _raw_by_ip() -> dict:
    totals: dict = {}
    for key, sums in raw_ip_hours().items():
        previous = totals.get(key[:3], (0, 0, 0, 0))
        totals[key[:3]] = tuple(a + b for a, b in zip(previous, sums, strict=True))
    return totals


@pytest.mark.django_db(transaction=True)
def test_0006_recomputes_the_ip_hours_going_back_and_forth(user):
    tokens = [funded_user_with_token(user, name="a"), funded_user_with_token(user, name="b")]
    moment = datetime(2026, 11, 30, 21, 40, tzinfo=UTC)
    for index in range(24):
        settle(
            tokens[index % 2],
            cost=10 + index,
            created_at=moment + timedelta(minutes=index * 9),
            client_ip=("203.0.113.7", "2001:db8::5")[index % 3 == 0],
            model=("gpt-4o", "gpt-4o-mini")[index % 5 == 0],
            status_code=(200, 429)[index % 4 == 0],
            prompt_tokens=index,
            completion_tokens=2 * index,
        )
    expected = raw_ip_hours()
    assert rollup_ip_hours() == expected
    try:
        # Back to 0005: one row per (user, IP, hour), equal to the raw rows' sums
        _migrate(BEFORE)
        assert _ip_hours_by_ip() == _raw_by_ip()
        assert len(_ip_hours_by_ip()) < len(expected)
        _migrate(AFTER)
    finally:
        # The later migrations too: the tests after this one need every table.
        _migrate_to_latest()
    # Forward again: keyed by token, model and status code, equal to the raw rows
    assert rollup_ip_hours() == expected
    assert RequestLog.objects.count() == 24
