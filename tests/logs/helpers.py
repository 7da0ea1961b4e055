"""Settle requests the way the relay does, so log rows come with their rollups."""

import itertools
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Sum
from django.db.models.functions import Trunc

from accounts.models import Token, User
from logs.models import (
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
