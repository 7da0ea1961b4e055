"""Settle requests the way the relay does, so log rows come with their rollups."""

import itertools
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Sum
from django.db.models.functions import Trunc

from accounts.models import Token, User
from logs.models import (
    AccountDay,
    PlatformDay,
    RequestLog,
    RequestLogData,
    UsageDay,
    UsageHour,
    UsageIpHour,
    UsageMinute,
)
from tests.billing.helpers import fund, make_token, spend

_numbers = itertools.count(1)
BASE = RequestLogData(
    model="gpt-4o-mini",
    client_ip="203.0.113.7",
    token_name="test",
    model_ratio=Decimal("0.075"),
    completion_ratio=Decimal("4"),
)


def funded_user_with_token(user: User, *, amount: int = 100_000_000, name: str = "test"):
    fund(user, amount, key=f"logs-test:{user.pk}:{amount}")
    token, _ = make_token(user, name=name)
    return token


def settle(
    token: Token,
    *,
    cost: int = 100,
    created_at: datetime | None = None,
    request_id: str | None = None,
    **fields,
) -> str:
    """Hold and settle one request of `token` as the relay does; return its request id."""
    request_id = request_id or f"test-{next(_numbers)}-{token.pk}"
    log = replace(BASE, token_name=token.name, created_at=created_at, **fields)
    return spend(token, cost=cost, log=log, request_id=request_id)


def raw_aggregates(unit: str) -> dict:
    """Return {(user, token, model, status code, bucket): (requests, prompt, completion, cost)}."""
    rows = (
        RequestLog.objects.annotate(bucket=Trunc("created_at", unit))
        .values("user_id", "token_id", "model", "status_code", "bucket")
        .annotate(
            requests=Count("id"),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            cost=Sum("cost"),
        )
    )
    totals: dict = {}
    for row in rows:
        key = (
            row["user_id"],
            row["token_id"] or 0,
            row["model"],
            row["status_code"],
            row["bucket"],
        )
        values = (row["requests"], row["prompt"], row["completion"], row["cost"])
        previous = totals.get(key, (0, 0, 0, 0))
        totals[key] = tuple(a + b for a, b in zip(previous, values, strict=True))
    return totals


def rollup_aggregates(unit: str) -> dict:
    model = {"minute": UsageMinute, "hour": UsageHour, "day": UsageDay}[unit]
    return {
        (row.user_id, row.token_id, row.model, row.status_code, row.bucket): (
            row.requests,
            row.prompt_tokens,
            row.completion_tokens,
            row.cost,
        )
        for row in model.objects.all()
    }


def raw_ip_hours() -> dict:
    """Return {(user, ip, hour, token, model, status code): (requests, prompt, completion, cost)}.

    Computed from the raw rows, for comparison with `UsageIpHour`.
    """
    rows = (
        RequestLog.objects.annotate(bucket=Trunc("created_at", "hour"))
        .values("user_id", "client_ip", "bucket", "token_id", "model", "status_code")
        .annotate(
            requests=Count("id"),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            cost=Sum("cost"),
        )
    )
    totals: dict = {}
    for row in rows:
        key = (
            row["user_id"],
            row["client_ip"],
            row["bucket"],
            row["token_id"] or 0,
            row["model"],
            row["status_code"],
        )
        values = (row["requests"], row["prompt"], row["completion"], row["cost"])
        previous = totals.get(key, (0, 0, 0, 0))
        totals[key] = tuple(a + b for a, b in zip(previous, values, strict=True))
    return totals


def rollup_ip_hours() -> dict:
    return {
        (row.user_id, row.client_ip, row.bucket, row.token_id, row.model, row.status_code): (
            row.requests,
            row.prompt_tokens,
            row.completion_tokens,
            row.cost,
        )
        for row in UsageIpHour.objects.all()
    }


def raw_platform_days() -> dict:
    """Return {(day, model, channel, group): (requests, errors, prompt, completion, cost)}."""
    totals: dict = {}
    for log in RequestLog.objects.select_related("user"):
        day = log.created_at.replace(hour=0, minute=0, second=0, microsecond=0)
        key = (day, log.model, log.channel_id or 0, log.user.pricing_group_id or 0)
        values = (1, int(log.status_code >= 400), log.prompt_tokens, log.completion_tokens)
        values += (log.cost,)
        previous = totals.get(key, (0, 0, 0, 0, 0))
        totals[key] = tuple(a + b for a, b in zip(previous, values, strict=True))
    return totals


def rollup_platform_days() -> dict:
    return {
        (row.bucket, row.model, row.channel_id, row.pricing_group_id): (
            row.requests,
            row.errors,
            row.prompt_tokens,
            row.completion_tokens,
            row.cost,
        )
        for row in PlatformDay.objects.all()
    }


def raw_account_days() -> dict:
    """Return {(day, user): (requests, errors, prompt, completion, cost)}."""
    totals: dict = {}
    for log in RequestLog.objects.all():
        day = log.created_at.replace(hour=0, minute=0, second=0, microsecond=0)
        values = (1, int(log.status_code >= 400), log.prompt_tokens, log.completion_tokens)
        values += (log.cost,)
        previous = totals.get((day, log.user_id), (0, 0, 0, 0, 0))
        totals[(day, log.user_id)] = tuple(a + b for a, b in zip(previous, values, strict=True))
    return totals


def rollup_account_days() -> dict:
    return {
        (row.bucket, row.user_id): (
            row.requests,
            row.errors,
            row.prompt_tokens,
            row.completion_tokens,
            row.cost,
        )
        for row in AccountDay.objects.all()
    }


def days_match_raw_rows() -> bool:
    """Say whether the platform and account days equal the raw rows' aggregates."""
    return (
        rollup_platform_days() == raw_platform_days()
        and rollup_account_days() == raw_account_days()
    )
