"""Reads of the request log: filtered pages, totals, chart series, admin error rates.

Pages are keyset pages over (-created_at, -id), each filter matching an index
that ends in those columns: the first and the 10,000th page cost the same, and
nothing counts the whole range. Totals and charts read the rollup tables.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import reduce
from operator import or_
from typing import cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import CharField, Count, Exists, F, Max, OuterRef, Q, QuerySet, Sum, Value
from django.db.models.functions import TruncDate, TruncHour
from django.utils import timezone

from accounts.models import Token
from logs.forms import Cursor, LogFilters
from logs.models import (
    AccountDay,
    ChannelHour,
    PlatformDay,
    Refusal,
    RequestLog,
    TokenIp,
    UsageDay,
    UsageHour,
    UsageIpHour,
    UsageMinute,
)
from logs.rollups import bucket_start

PAGE_SIZE = 50
# Totals no rollup answers (the admin's channel filter) read at most this many raw
# rows, newest first, and say so when the range holds more.
RAW_TOTALS_LIMIT = 20_000
_UNITS = [
    ("day", timedelta(days=1)),
    ("hour", timedelta(hours=1)),
    ("minute", timedelta(minutes=1)),
]
_ROLLUPS: dict[str, type[UsageDay] | type[UsageHour] | type[UsageMinute]] = {
    "day": UsageDay,
    "hour": UsageHour,
    "minute": UsageMinute,
}


def _who_and_what(rows: QuerySet, filters: LogFilters) -> QuerySet:
    """Filter request log or refusal rows by user, token, model and client address."""
    if filters.user_id is not None:
        rows = rows.filter(user_id=filters.user_id)
    if filters.token_id is not None:
        rows = rows.filter(token_id=filters.token_id)
    if filters.model:
        rows = rows.filter(model=filters.model)
    if filters.client_ip:
        rows = rows.filter(client_ip=filters.client_ip)
    return rows


def log_list(*, filters: LogFilters) -> QuerySet[RequestLog]:
    """Return the rows matching `filters`, newest first (`user_id` None: every user)."""
    rows = RequestLog.objects.filter(created_at__gte=filters.start, created_at__lt=filters.end)
    rows = _who_and_what(rows, filters)
    if filters.channel_id is not None:
        rows = rows.filter(channel_id=filters.channel_id)
    if filters.status == "ok":
        rows = rows.filter(status_code__lt=400)
    elif filters.status == "error":
        rows = rows.filter(status_code__gte=400)
    elif filters.status == "refused":
        # Refused requests are not in the request log (refusal_list).
        rows = rows.none()
    elif filters.status_code is not None:
        rows = rows.filter(status_code=filters.status_code)
    return rows.order_by("-created_at", "-id")


REFUSALS_SHOWN = 200
# Counting refusals reads at most this many rows (each stands for up to many).
REFUSALS_COUNTED = 10_000


def _refusals(filters: LogFilters) -> QuerySet[Refusal]:
    rows = Refusal.objects.filter(second__gte=filters.start, second__lt=filters.end)
    rows = _who_and_what(rows, filters)
    if filters.status_code is not None:
        rows = rows.filter(status_code=filters.status_code)
    return rows.order_by("-second", "-id")


def refusal_list(*, filters: LogFilters) -> list[Refusal]:
    """Return the newest REFUSALS_SHOWN refusal rows matching `filters` (status aside)."""
    return list(_refusals(filters)[:REFUSALS_SHOWN])


def refusal_count(*, filters: LogFilters) -> int:
    """Return how many requests were refused in the filtered range (from the newest rows).

    Only filters that refusals can match count: "ok" matches none.
    """
    if filters.status == "ok" or filters.channel_id is not None:
        return 0
    if filters.status_code is not None and filters.status_code < 400:
        return 0
    ids = _refusals(filters).values("id")[:REFUSALS_COUNTED]
    return Refusal.objects.filter(id__in=ids).aggregate(total=Sum("count"))["total"] or 0


def errors_per_hour(
    *, user_id: int, hours: int, now: datetime | None = None, zone: tzinfo | None = None
) -> dict:
    """Return failed and refused requests per hour over the last `hours` hours.

    Failed: answered with an error status (the hour rollups); refused: turned away
    before any model was asked (Refusal rows, one per token, code and second). The hours
    are UTC hours (the rollups'), labelled with their start in `zone` (default: the
    active one): 05:30, 06:30... in a half-hour zone.
    """
    zone = zone or timezone.get_current_timezone()
    now = bucket_start((now or timezone.now()).astimezone(UTC), "hour")
    since = now - timedelta(hours=hours - 1)
    failed = dict(
        UsageHour.objects.filter(user_id=user_id, bucket__gte=since, status_code__gte=400)
        .values("bucket")
        .annotate(total=Sum("requests"))
        .order_by()
        .values_list("bucket", "total")
    )
    refused = dict(
        Refusal.objects.filter(user_id=user_id, second__gte=since)
        .annotate(hour=TruncHour("second", tzinfo=UTC))
        .values("hour")
        .annotate(total=Sum("count"))
        .order_by()
        .values_list("hour", "total")
    )
    labels, failed_counts, refused_counts = [], [], []
    for index in range(hours):
        hour = since + timedelta(hours=index)
        local = hour.astimezone(zone)
        labels.append(local.strftime("%H:%M") if hours <= 24 else local.strftime("%m-%d %H:%M"))
        failed_counts.append(failed.get(hour, 0))
        refused_counts.append(refused.get(hour, 0))
    return {"labels": labels, "failed": failed_counts, "refused": refused_counts}


def _after(rows: QuerySet[RequestLog], cursor: Cursor) -> QuerySet[RequestLog]:
    # The first condition bounds the index range; the second breaks timestamp ties by id.
    if cursor.direction == "older":
        return rows.filter(created_at__lte=cursor.created_at).filter(
            Q(created_at__lt=cursor.created_at) | Q(id__lt=cursor.id)
        )
    return rows.filter(created_at__gte=cursor.created_at).filter(
        Q(created_at__gt=cursor.created_at) | Q(id__gt=cursor.id)
    )


@dataclass(frozen=True)
class LogPage:
    rows: list[RequestLog]
    older: str | None  # signed cursor of the next (older) page
    newer: str | None  # signed cursor of the previous (newer) page
    new_ip_log_ids: frozenset[int]


def log_page(
    *,
    filters: LogFilters,
    cursor: Cursor | None = None,
    size: int = PAGE_SIZE,
    mark_new_ips: bool = True,
) -> LogPage:
    """Return one keyset page of rows, each marked if its IP is new on its token (one query)."""
    rows = log_list(filters=filters)
    if mark_new_ips:
        rows = rows.annotate(
            is_new_ip=Exists(
                TokenIp.objects.filter(first_log_id=OuterRef("id"), is_new_on_token=True)
            )
        )
    if cursor is not None:
        rows = _after(rows, cursor)
    newer_first = cursor is not None and cursor.direction == "newer"
    if newer_first:
        rows = rows.order_by("created_at", "id")
    page = list(rows[: size + 1])
    has_more = len(page) > size
    page = page[:size]
    if newer_first:
        page.reverse()
    older = newer = None
    if page:
        first, last = page[0], page[-1]
        if has_more or newer_first:
            older = Cursor(last.created_at, last.pk, "older").sign()
        if cursor is not None and (has_more or not newer_first):
            newer = Cursor(first.created_at, first.pk, "newer").sign()
    new_ips = frozenset(row.pk for row in page if getattr(row, "is_new_ip", False))
    return LogPage(page, older, newer, new_ips)


@dataclass(frozen=True)
class Totals:
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: int
    # False when the range held more matching rows than a raw read may count.
    is_exact: bool = True


def _ceil(moment: datetime, step: timedelta, unit: str) -> datetime:
    floor = bucket_start(moment, unit)
    return floor if floor == moment else floor + step


def range_pieces(
    start: datetime, end: datetime, units: list[tuple[str, timedelta]] = _UNITS
) -> list[tuple[str, datetime, datetime]]:
    """Split [start, end) into whole days, hours and minutes, and raw edges.

    Returns (unit, from, to) pieces, unit "day" / "hour" / "minute" / "raw": the
    coarsest buckets that fit whole inside, then finer ones for what is left.
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    pieces: list[tuple[str, datetime, datetime]] = []

    def split(low: datetime, high: datetime, level: int) -> None:
        if low >= high:
            return
        if level == len(units):
            pieces.append(("raw", low, high))
            return
        unit, step = units[level]
        inner_low, inner_high = _ceil(low, step, unit), bucket_start(high, unit)
        if inner_low >= inner_high:
            split(low, high, level + 1)
            return
        split(low, inner_low, level + 1)
        pieces.append((unit, inner_low, inner_high))
        split(inner_high, high, level + 1)

    split(start, end, 0)
    return pieces


def totals_from_rollups(filters: LogFilters) -> bool:
    """Say whether the rollups answer the totals of `filters` (else a bounded raw read).

    Every console filter mix does; only the admin's channel filter has no rollup.
    """
    return filters.channel_id is None


def log_totals(*, filters: LogFilters) -> Totals:
    """Return requests, tokens and cost of every row matching `filters`, in one query.

    Without an IP, token, model and status filters read the usage rollups (whole
    days, hours, minutes) plus the raw rows of the partial minutes at both ends;
    with an IP (alone or with token, model, status) they read the per-IP hours plus
    the raw rows of the partial hours: the pieces are summed by one UNION ALL. A
    channel filter reads at most RAW_TOTALS_LIMIT raw rows and says so when there
    are more.
    """
    if not totals_from_rollups(filters):
        return _raw_totals(filters)
    if filters.client_ip is None:
        pieces = range_pieces(filters.start, filters.end)
    else:
        pieces = range_pieces(filters.start, filters.end, units=[("hour", timedelta(hours=1))])
    parts = []
    for unit, low, high in pieces:
        if unit == "raw":
            piece = LogFilters(**{**filters.__dict__, "start": low, "end": high})
            ids = log_list(filters=piece).values("id")[: RAW_TOTALS_LIMIT + 1]
            parts.append(
                _summed(
                    RequestLog.objects.filter(id__in=ids),
                    requests=Count("id"),
                    prompt=Sum("prompt_tokens"),
                    completion=Sum("completion_tokens"),
                    cost=Sum("cost"),
                )
            )
            continue
        buckets: QuerySet
        if filters.client_ip is not None:
            buckets = UsageIpHour.objects.filter(client_ip=filters.client_ip)
        else:
            buckets = _ROLLUPS[unit].objects.all()
        buckets = _rollup_filter(buckets, filters)
        if filters.user_id is not None:
            buckets = buckets.filter(user_id=filters.user_id)
        parts.append(
            _summed(
                buckets.filter(bucket__gte=low, bucket__lt=high),
                requests=Sum("requests"),
                prompt=Sum("prompt_tokens"),
                completion=Sum("completion_tokens"),
                cost=Sum("cost"),
            )
        )
    rows = _union_rows(parts)
    sums = [sum(row[index] or 0 for row in rows) for index in range(1, 5)]
    if any(unit == "raw" for unit, _, _ in pieces) and any(
        row[0] == "raw" and (row[1] or 0) > RAW_TOTALS_LIMIT for row in rows
    ):
        # A partial minute or hour held more rows than a bounded read counts.
        return _raw_totals(filters)
    requests, prompt, completion, cost = sums
    return Totals(requests, prompt, completion, cost)


def _union_rows(parts: list[QuerySet]) -> list[tuple]:
    if not parts:
        return []
    union = parts[0].union(*parts[1:], all=True)
    if connection.vendor != "postgresql":
        return list(union)
    with transaction.atomic(), connection.cursor() as cursor:
        # A few small index reads: starting parallel workers costs more than it saves
        # (measured: 29 ms with a Parallel Append, 10 ms without, in bench/logs).
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        return list(union)


def _summed(queryset: QuerySet, **sums) -> QuerySet:
    """Return one row (kind, requests, prompt, completion, cost) of `queryset`'s sums."""
    kind = "raw" if queryset.model is RequestLog else "rollup"
    return (
        queryset.order_by()
        .annotate(kind=Value(kind, output_field=CharField()))
        .values("kind")
        .annotate(**sums)
        .values_list("kind", "requests", "prompt", "completion", "cost")
    )


def _rollup_filter(buckets: QuerySet, filters: LogFilters) -> QuerySet:
    if filters.token_id is not None:
        buckets = buckets.filter(token_id=filters.token_id)
    if filters.model:
        buckets = buckets.filter(model=filters.model)
    if filters.status == "ok":
        buckets = buckets.filter(status_code__lt=400)
    elif filters.status == "error":
        buckets = buckets.filter(status_code__gte=400)
    elif filters.status_code is not None:
        buckets = buckets.filter(status_code=filters.status_code)
    return buckets


def _raw_totals(filters: LogFilters) -> Totals:
    row = _raw_sums(filters, RAW_TOTALS_LIMIT + 1)
    if row["requests"] > RAW_TOTALS_LIMIT:
        # More than a bounded read may count: the newest RAW_TOTALS_LIMIT rows' sums.
        row = _raw_sums(filters, RAW_TOTALS_LIMIT)
        return Totals(
            row["requests"], row["prompt"] or 0, row["completion"] or 0, row["cost"] or 0, False
        )
    return Totals(row["requests"], row["prompt"] or 0, row["completion"] or 0, row["cost"] or 0)


def _raw_sums(filters: LogFilters, limit: int) -> dict:
    ids = log_list(filters=filters).values("id")[:limit]
    return RequestLog.objects.filter(id__in=ids).aggregate(
        requests=Count("id"),
        prompt=Sum("prompt_tokens"),
        completion=Sum("completion_tokens"),
        cost=Sum("cost"),
    )


# --- Chart series (rollups only) ----------------------------------------------------


def usage_per_minute(
    *, user_id: int, minutes: int, now: datetime | None = None, zone: tzinfo | None = None
) -> dict:
    """Return requests and tokens per minute over the last `minutes` minutes, labelled in
    `zone` (default: the active one)."""
    zone = zone or timezone.get_current_timezone()
    now = bucket_start((now or timezone.now()).astimezone(UTC), "minute")
    since = now - timedelta(minutes=minutes - 1)
    rows = (
        UsageMinute.objects.filter(user_id=user_id, bucket__gte=since)
        .values("bucket")
        .annotate(
            requests=Sum("requests"),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
        )
        .order_by()
    )
    by_minute = {row["bucket"]: row for row in rows}
    labels, rpm, tpm = [], [], []
    for index in range(minutes):
        minute = since + timedelta(minutes=index)
        row = by_minute.get(minute)
        local = minute.astimezone(zone)
        labels.append(local.strftime("%H:%M") if minutes <= 60 else local.strftime("%d %H:%M"))
        rpm.append(row["requests"] if row else 0)
        tpm.append((row["prompt"] + row["completion"]) if row else 0)
    return {"labels": labels, "requests": rpm, "tokens": tpm}


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """Return the moment (UTC) local `day` starts in `zone`.

    A midnight that a DST change skips (clocks jump from 00:00 to 01:00) is the moment of
    the change: the first moment of that local day.
    """
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _local_days(now: datetime, days: int, zone: tzinfo) -> list[tuple[date, datetime]]:
    """Return the last `days` local days up to today in `zone`: (date, start in UTC), and
    the end of today as a last (date, start) of tomorrow."""
    today = now.astimezone(zone).date()
    dates = [today - timedelta(days=days - 1 - index) for index in range(days + 1)]
    return [(day, local_midnight(day, zone)) for day in dates]


def usage_per_local_day(
    *,
    user_id: int,
    days: int,
    by: str,
    now: datetime | None = None,
    zone: tzinfo | None = None,
) -> dict[tuple[date, object], tuple[int, int]]:
    """Return {(local date, value of `by`): (cost, requests)} over the last `days` days of
    `zone` (default: the active one), today included; `by` is "model" or "token_id".

    A local day is summed from the hour rollups between its two midnights. Where a local
    midnight falls inside a UTC hour (a zone at +05:30 or +05:45), that hour is summed from
    its minute rollups instead, so each day is exact in every zone. Hour and minute rollups
    are kept LOG_RETENTION_DAYS (logs.services.log_prune); a local day starting before
    that reads the per-day rollup of the UTC day of the same date (an approximation, only
    when LOG_RETENTION_DAYS is shorter than the chart). At most three queries; one for a
    whole-hour zone within retention.
    """
    zone = zone or timezone.get_current_timezone()
    now = (now or timezone.now()).astimezone(UTC)
    bounds = _local_days(now, days, zone)
    until = bounds[-1][1]
    kept_since = log_retention_cutoff(now=now)
    exact = [(day, start) for day, start in bounds[:-1] if start >= kept_since]
    older = [day for day, start in bounds[:-1] if start < kept_since]
    sums: dict[tuple[date, object], tuple[int, int]] = {}

    def add(rows: Iterable[dict]) -> None:
        for row in rows:
            key = (row["day"], row[by])
            cost, requests = sums.get(key, (0, 0))
            sums[key] = (cost + row["cost"], requests + row["requests"])

    if exact:
        since = exact[0][1]
        # UTC hours with a local midnight strictly inside: read from their minutes.
        split_hours = sorted(
            {bucket_start(start, "hour") for _day, start in bounds if start.minute or start.second}
        )
        hours = UsageHour.objects.filter(
            user_id=user_id, bucket__gte=bucket_start(since, "hour"), bucket__lt=until
        ).exclude(bucket__in=split_hours)
        add(_per_local_day(hours, by, zone))
        if split_hours:
            in_split_hours = reduce(
                or_,
                (Q(bucket__gte=hour, bucket__lt=hour + timedelta(hours=1)) for hour in split_hours),
            )
            minutes = UsageMinute.objects.filter(
                in_split_hours, user_id=user_id, bucket__gte=since, bucket__lt=until
            )
            add(_per_local_day(minutes, by, zone))
    if older:
        utc_days = UsageDay.objects.filter(
            user_id=user_id,
            bucket__in=[datetime.combine(day, time(), tzinfo=UTC) for day in older],
        )
        add(_per_local_day(utc_days, by, UTC))
    return sums


def _per_local_day(buckets: QuerySet, by: str, zone: tzinfo) -> QuerySet:
    return (
        buckets.annotate(day=TruncDate("bucket", tzinfo=zone))
        .values("day", by)
        .annotate(cost=Sum("cost"), requests=Sum("requests"))
        .order_by()
    )


def usage_by_model_per_day(
    *, user_id: int, days: int, now: datetime | None = None, zone: tzinfo | None = None
) -> dict:
    """Return spend (micro-USD) and requests per model per local day of `zone` (default:
    the active one) over the last `days` days (`usage_per_local_day`)."""
    zone = zone or timezone.get_current_timezone()
    now = (now or timezone.now()).astimezone(UTC)
    day_labels = [day for day, _start in _local_days(now, days, zone)[:-1]]
    index_of = {day: index for index, day in enumerate(day_labels)}
    cost: dict[str, list[int]] = {}
    requests: dict[str, list[int]] = {}
    sums = usage_per_local_day(user_id=user_id, days=days, by="model", now=now, zone=zone)
    for (day, model), (day_cost, day_requests) in sums.items():
        position = index_of.get(day)
        if position is None:
            continue
        cost.setdefault(str(model), [0] * days)[position] += day_cost
        requests.setdefault(str(model), [0] * days)[position] += day_requests
    models = sorted(cost, key=lambda name: -sum(cost[name]))
    return {
        "labels": [day.isoformat() for day in day_labels],
        "models": models,
        "cost": [cost[name] for name in models],
        "requests": [requests[name] for name in models],
    }


def spend_by_token(
    *, user_id: int, days: int, now: datetime | None = None, zone: tzinfo | None = None
) -> list[dict]:
    """Return each token's spend (micro-USD) and requests over the last `days` local days."""
    totals: dict[int, list[int]] = {}
    sums = usage_per_local_day(user_id=user_id, days=days, by="token_id", now=now, zone=zone)
    for (_day, token_id), (cost, requests) in sums.items():
        total = totals.setdefault(cast(int, token_id), [0, 0])
        total[0] += cost
        total[1] += requests
    rows = sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))
    names = dict(
        Token.objects.filter(pk__in=[token_id for token_id, _ in rows]).values_list("id", "name")
    )
    return [
        {
            "token_id": token_id,
            "name": names.get(token_id)
            or ("No token" if not token_id else f"Deleted token #{token_id}"),
            "cost": cost,
            "requests": requests,
        }
        for token_id, (cost, requests) in rows
    ]


def spend_per_day(
    *, user_id: int, days: int, now: datetime | None = None, zone: tzinfo | None = None
) -> dict:
    """Return spend (micro-USD) and requests per local day of `zone` (default: the active
    one) over the last `days` days, today last, days without a request included."""
    per_model = usage_by_model_per_day(user_id=user_id, days=days, now=now, zone=zone)
    return {
        "labels": per_model["labels"],
        "cost": [sum(day) for day in zip(*per_model["cost"], strict=True)] or [0] * days,
        "requests": [sum(day) for day in zip(*per_model["requests"], strict=True)] or [0] * days,
    }


# The console home's daily-spend line covers this many days, today included.
HOME_SPEND_DAYS = 30


@dataclass(frozen=True)
class HomeUsage:
    spend_today: int  # the reader's day: since their local midnight
    requests_today: int
    rpm: int  # requests in the last whole minute
    spend_per_day: dict  # labels and cost of the last HOME_SPEND_DAYS days

    @property
    def spend_period(self) -> int:
        """What the last HOME_SPEND_DAYS days cost, today included."""
        return sum(self.spend_per_day["cost"])


def home_usage(
    *, user_id: int, now: datetime | None = None, zone: tzinfo | None = None
) -> HomeUsage:
    """Return the console home's figures: today's spend (the local day of `zone`, default
    the active one), RPM now, spend per local day."""
    now = (now or timezone.now()).astimezone(UTC)
    days = spend_per_day(user_id=user_id, days=HOME_SPEND_DAYS, now=now, zone=zone)
    last_minute = bucket_start(now, "minute") - timedelta(minutes=1)
    rpm = (
        UsageMinute.objects.filter(user_id=user_id, bucket=last_minute).aggregate(
            requests=Sum("requests")
        )["requests"]
        or 0
    )
    return HomeUsage(
        spend_today=days["cost"][-1],
        requests_today=days["requests"][-1],
        rpm=rpm,
        spend_per_day={"labels": days["labels"], "cost": days["cost"]},
    )


def log_retention_cutoff(*, now: datetime | None = None) -> datetime:
    """Return the moment before which request log rows are past LOG_RETENTION_DAYS."""
    return (now or timezone.now()) - timedelta(days=settings.LOG_RETENTION_DAYS)


def log_last_ids_before(*, cutoff: datetime) -> list[tuple[int, int]]:
    """Return (user id, id of the user's newest row) of each user with rows older than
    `cutoff`, by user id."""
    return list(
        RequestLog.objects.filter(created_at__lt=cutoff)
        .values("user_id")
        .annotate(through=Max("id"))
        .order_by("user_id")
        .values_list("user_id", "through")
    )


# --- the operator's dashboard: the whole platform, from the day rollups -------------

# What the dashboard groups platform days by.
PLATFORM_DIMENSIONS = ("model", "channel_id", "pricing_group_id")


def platform_since(*, days: int, now: datetime | None = None) -> datetime:
    """Return the start (UTC) of the first of the last `days` days, today included."""
    today = bucket_start((now or timezone.now()).astimezone(UTC), "day")
    return today - timedelta(days=days - 1)


def _platform_sums(rows: QuerySet) -> QuerySet:
    return rows.annotate(
        requests_sum=Sum("requests"),
        errors_sum=Sum("errors"),
        # One sum for both: each sum of a bigint is a numeric aggregate, the costly part.
        tokens_sum=Sum(F("prompt_tokens") + F("completion_tokens")),
        cost_sum=Sum("cost"),
    )


def _platform_row(row: dict, key: str) -> dict:
    return {
        key: row[key],
        "requests": row["requests_sum"],
        "errors": row["errors_sum"],
        "tokens": row["tokens_sum"],
        "cost": row["cost_sum"],
    }


def platform_spend_per_day(*, since: datetime) -> list[dict]:
    """Return the platform's requests, errors, tokens (prompt and completion) and cost per day
    from `since`, oldest first.

    One query over `PlatformDay`; days without requests are absent.
    """
    rows = _platform_sums(PlatformDay.objects.filter(bucket__gte=since).values("bucket"))
    return [_platform_row(row, "bucket") for row in rows.order_by("bucket")]


def platform_spend_by(*, dimension: str, since: datetime, limit: int = 20) -> list[dict]:
    """Return the `limit` models, channels or pricing groups that cost the most from `since`.

    `dimension` is one of `PLATFORM_DIMENSIONS`; ids 0 are "none" (no channel answered)
    or the default group. One query over `PlatformDay`.
    """
    if dimension not in PLATFORM_DIMENSIONS:
        raise ValueError(f"Unknown dimension {dimension!r}.")
    rows = _platform_sums(PlatformDay.objects.filter(bucket__gte=since).values(dimension))
    return [
        _platform_row(row, dimension)
        for row in rows.order_by("-cost_sum", "-requests_sum", dimension)[:limit]
    ]


def channel_attempts(*, since: datetime) -> dict[int, tuple[int, int]]:
    """Map each channel to its attempts and failed attempts (each a failover) from `since`.

    One query over `ChannelHour`.
    """
    rows = (
        ChannelHour.objects.filter(bucket__gte=since)
        .values("channel_id")
        .annotate(requests_sum=Sum("requests"), failures_sum=Sum("failures"))
        .values_list("channel_id", "requests_sum", "failures_sum")
    )
    return {channel_id: (requests, failures) for channel_id, requests, failures in rows}


def account_spend_top(*, since: datetime, limit: int = 20) -> list[dict]:
    """Return the `limit` accounts that spent the most from `since` (user ids, sums).

    One query over `AccountDay`.
    """
    rows = (
        AccountDay.objects.filter(bucket__gte=since)
        .values("user_id")
        .annotate(
            requests_sum=Sum("requests"),
            errors_sum=Sum("errors"),
            tokens_sum=Sum(F("prompt_tokens") + F("completion_tokens")),
            cost_sum=Sum("cost"),
        )
        .order_by("-cost_sum", "user_id")[:limit]
    )
    return [_platform_row(row, "user_id") for row in rows]
