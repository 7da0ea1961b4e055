"""The operator's dashboard in the admin: the platform as a whole, from the rollups.

Each panel is one function reading a few rows of rollups or billing tables (never the
request log), its query count pinned in tests/comet/test_dashboard.py and its time
measured in bench/dashboard/. The window is the last 7, 30 or 90 days (UTC), today
included.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.selectors import user_emails
from billing.selectors import (
    OrdersNeedingAttention,
    Revenue,
    orders_needing_attention,
    revenue_summary,
)
from logs.selectors import (
    account_spend_top,
    channel_attempts,
    platform_since,
    platform_spend_by,
    platform_spend_per_day,
)
from models_catalog.selectors import pricing_group_names
from relay.selectors import channel_names

WINDOWS = (7, 30, 90)
DEFAULT_WINDOW = 30
# Rows of each ranked panel: the rest of a long tail is in the admin's lists.
TOP_ROWS = 20


@dataclass(frozen=True)
class Row:
    """One line of a panel: what it is about and its sums (micro-USD for cost)."""

    label: str
    requests: int
    errors: int
    tokens: int  # prompt and completion
    cost: int
    link: str = ""
    # Channels: attempts and failed attempts (each made the relay try the next channel).
    attempts: int = 0
    failures: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def failover_rate(self) -> float:
        return self.failures / self.attempts if self.attempts else 0.0

    @property
    def error_percent(self) -> str:
        return f"{self.error_rate:.1%}"

    @property
    def failover_percent(self) -> str:
        return f"{self.failover_rate:.1%}"


def _row(sums: dict, label: str, **extra: Any) -> Row:
    return Row(
        label=label,
        requests=sums["requests"],
        errors=sums["errors"],
        tokens=sums["tokens"],
        cost=sums["cost"],
        **extra,
    )


def revenue_panel(*, since: datetime) -> Revenue:
    """Recharges, refunds and lost disputes: 1 query."""
    return revenue_summary(since=since)


def days_panel(*, since: datetime) -> list[Row]:
    """Spend per day, oldest first: 1 query."""
    return [_row(day, f"{day['bucket']:%Y-%m-%d}") for day in platform_spend_per_day(since=since)]


def models_panel(*, since: datetime) -> list[Row]:
    """The models that cost the most: 1 query."""
    return [
        _row(row, row["model"])
        for row in platform_spend_by(dimension="model", since=since, limit=TOP_ROWS)
    ]


def channels_panel(*, since: datetime) -> list[Row]:
    """Spend, error rate and failover rate of each channel: 3 queries.

    Requests, errors and cost from the platform days; attempts and failed attempts from
    the channel hours (a failed attempt made the relay fail over to the next channel).
    """
    spend = {
        row["channel_id"]: row
        for row in platform_spend_by(dimension="channel_id", since=since, limit=TOP_ROWS)
    }
    attempts = channel_attempts(since=since)
    ids = sorted(set(spend) | set(attempts))
    names = channel_names(channel_ids=[channel_id for channel_id in ids if channel_id])
    empty = {"requests": 0, "errors": 0, "tokens": 0, "cost": 0}
    rows = []
    for channel_id in ids:
        if not channel_id:
            label = gettext("No channel answered")
        else:
            label = names.get(channel_id) or gettext("Deleted channel #%(id)s") % {"id": channel_id}
        tried, failed = attempts.get(channel_id, (0, 0))
        rows.append(_row(spend.get(channel_id, empty), label, attempts=tried, failures=failed))
    return sorted(rows, key=lambda row: (-row.cost, -row.attempts, row.label))[:TOP_ROWS]


def groups_panel(*, since: datetime) -> list[Row]:
    """Spend per pricing group: 2 queries."""
    rows = platform_spend_by(dimension="pricing_group_id", since=since, limit=TOP_ROWS)
    names, default = pricing_group_names()
    panel = []
    for row in rows:
        group_id = row["pricing_group_id"] or default
        if group_id is None:  # the default group, whose row is gone
            label = gettext("Default group")
        else:
            label = names.get(group_id) or gettext("Deleted group #%(id)s") % {"id": group_id}
        panel.append(_row(row, label))
    return panel


def accounts_panel(*, since: datetime) -> list[Row]:
    """The accounts that spent the most: 2 queries."""
    rows = account_spend_top(since=since, limit=TOP_ROWS)
    emails = user_emails(user_ids=[row["user_id"] for row in rows])
    return [
        _row(
            row,
            emails.get(row["user_id"]) or gettext("Deleted user #%(id)s") % {"id": row["user_id"]},
            link=reverse("admin:billing_account_change", args=[row["user_id"]]),
        )
        for row in rows
    ]


def orders_panel() -> OrdersNeedingAttention:
    """The orders a person should look at: 2 queries (1 when there are none)."""
    return orders_needing_attention(limit=TOP_ROWS)


def window_days(request: HttpRequest) -> int:
    """Return the window asked for (`?days=`), or the default for anything else."""
    asked = request.GET.get("days", "")
    return int(asked) if asked in {str(days) for days in WINDOWS} else DEFAULT_WINDOW


def dashboard(request: HttpRequest, *, context: dict[str, Any]) -> HttpResponse:
    """Render every panel for the window asked for (staff only: the admin site checks)."""
    days = window_days(request)
    since = platform_since(days=days, now=timezone.now())
    spend_per_day = days_panel(since=since)
    most = max((row.cost for row in spend_per_day), default=0)
    return TemplateResponse(
        request,
        "admin/dashboard.html",
        {
            **context,
            "title": _("Platform dashboard"),
            "days": days,
            "windows": WINDOWS,
            "since": since,
            "revenue": revenue_panel(since=since),
            "spend_per_day": spend_per_day,
            "most_per_day": most or 1,
            "total": _total(spend_per_day),
            "models": models_panel(since=since),
            "channels": channels_panel(since=since),
            "groups": groups_panel(since=since),
            "accounts": accounts_panel(since=since),
            "orders": orders_panel(),
        },
    )


def _total(days: list[Row]) -> Row:
    return Row(
        label="",
        requests=sum(row.requests for row in days),
        errors=sum(row.errors for row in days),
        tokens=sum(row.tokens for row in days),
        cost=sum(row.cost for row in days),
    )
