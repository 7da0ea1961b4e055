"""The rollup tables: written as requests settle, rebuilt from raw rows on demand.

`billing.settlement.settle_many` appends `SETTLE_CTE` to its single PostgreSQL
statement, so a batch's log rows and every
rollup increment commit together or not at all; its ORM path (SQLite, rare cases)
calls `rollups_record` inside its transaction. Increments are
`INSERT ... ON CONFLICT DO UPDATE SET x = x + EXCLUDED.x`: two settles of the same
bucket serialise on that one row and neither is lost. Every statement upserts minute,
hour, day, IP hour, token IP, channel, platform day and account day rows in that order,
each in key order, so two settles never wait on each other in a cycle.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Min
from django.utils import timezone

from accounts.models import User
from logs.models import (
    AccountDay,
    ChannelHour,
    PlatformDay,
    RequestLog,
    TokenIp,
    UsageDay,
    UsageHour,
    UsageIpHour,
    UsageMinute,
)

_LOG = RequestLog._meta.db_table
_TOKEN_IP = TokenIp._meta.db_table
_IP_HOUR = UsageIpHour._meta.db_table
_IP_KEY = "(user_id, client_ip, bucket, token_id, model, status_code)"
_IP_COLUMNS = (
    "user_id, client_ip, bucket, token_id, model, status_code, requests, prompt_tokens, "
    "completion_tokens, cost"
)
_CHANNEL = ChannelHour._meta.db_table
_USER = User._meta.db_table
_PLATFORM = PlatformDay._meta.db_table
_PLATFORM_KEY = "(bucket, model, channel_id, pricing_group_id)"
_PLATFORM_COLUMNS = (
    "bucket, model, channel_id, pricing_group_id, requests, errors, prompt_tokens, "
    "completion_tokens, cost"
)
_ACCOUNT = AccountDay._meta.db_table
_ACCOUNT_KEY = "(bucket, user_id)"
_ACCOUNT_COLUMNS = "bucket, user_id, requests, errors, prompt_tokens, completion_tokens, cost"
BUCKET_TABLES = {
    "minute": UsageMinute._meta.db_table,
    "hour": UsageHour._meta.db_table,
    "day": UsageDay._meta.db_table,
}
_BUCKET_KEY = "(user_id, bucket, token_id, model, status_code)"
_BUCKET_COLUMNS = (
    "user_id, token_id, model, status_code, bucket, requests, prompt_tokens, completion_tokens, "
    "cost"
)


def _bucket_increment(table: str, key: str = _BUCKET_KEY) -> str:
    return (
        f"ON CONFLICT {key} DO UPDATE SET requests = {table}.requests + EXCLUDED.requests, "
        f"prompt_tokens = {table}.prompt_tokens + EXCLUDED.prompt_tokens, "
        f"completion_tokens = {table}.completion_tokens + EXCLUDED.completion_tokens, "
        f"cost = {table}.cost + EXCLUDED.cost"
    )


_IP_INCREMENT = _bucket_increment(_IP_HOUR, _IP_KEY)


def _day_increment(table: str, key: str) -> str:
    return f"{_bucket_increment(table, key)}, errors = {table}.errors + EXCLUDED.errors"


_PLATFORM_INCREMENT = _day_increment(_PLATFORM, _PLATFORM_KEY)
_ACCOUNT_INCREMENT = _day_increment(_ACCOUNT, _ACCOUNT_KEY)


def _platform_select(source: str, where: str = "") -> str:
    """Sum `source`'s log rows per platform day; the group is the user's (0: default)."""
    return f"""SELECT date_trunc('day', log.created_at, 'UTC'), log.model,
        COALESCE(log.channel_id, 0), COALESCE(u.pricing_group_id, 0), count(*),
        count(*) FILTER (WHERE log.status_code >= 400), sum(log.prompt_tokens),
        sum(log.completion_tokens), sum(log.cost)
    FROM {source} log LEFT JOIN {_USER} u ON u.id = log.user_id {where}
    GROUP BY 1, 2, 3, 4"""  # noqa: S608 (our table names)


def _account_select(source: str, where: str = "") -> str:
    """Sum `source`'s log rows per account day."""
    return f"""SELECT date_trunc('day', created_at, 'UTC'), user_id, count(*),
        count(*) FILTER (WHERE status_code >= 400), sum(prompt_tokens),
        sum(completion_tokens), sum(cost)
    FROM {source} {where} GROUP BY 1, 2"""  # noqa: S608 (our table names)


def _cte_bucket(name: str, unit: str, table: str) -> str:
    return f"""{name} AS (
    INSERT INTO {table} ({_BUCKET_COLUMNS})
    SELECT user_id, COALESCE(token_id, 0), model, status_code,
        date_trunc('{unit}', created_at, 'UTC'), count(*), sum(prompt_tokens),
        sum(completion_tokens), sum(cost)
    FROM log GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    {_bucket_increment(table)}
    RETURNING 1
)"""  # noqa: S608 (our table names)


# Appended after the `log` step (`INSERT ... RETURNING *`) of the settle statement,
# which writes one row per request of a batch (`billing.settlement.settle_many`).
# Each step sums the batch per rollup row, since one INSERT ... ON CONFLICT may not
# touch a row twice, and upserts the sums in key order, so two batches lock shared
# rows in the same order. `token_ip` reports the addresses new on their token (the
# statement's snapshot does not see its own inserts: an address is new when the
# token had one before, or when an earlier address of the same batch came first).
SETTLE_CTE = f""",
{_cte_bucket("minute_usage", "minute", BUCKET_TABLES["minute"])},
{_cte_bucket("hour_usage", "hour", BUCKET_TABLES["hour"])},
{_cte_bucket("day_usage", "day", BUCKET_TABLES["day"])},
ip_usage AS (
    INSERT INTO {_IP_HOUR} ({_IP_COLUMNS})
    SELECT user_id, client_ip, date_trunc('hour', created_at, 'UTC'), COALESCE(token_id, 0),
        model, status_code, count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost)
    FROM log GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
    {_IP_INCREMENT}
    RETURNING 1
), token_ip AS (
    INSERT INTO {_TOKEN_IP}
        (token_id, client_ip, first_log_id, first_seen, last_seen, requests, is_new_on_token)
    SELECT log.token_id, log.client_ip, min(log.id), min(log.created_at), max(log.created_at),
        count(*),
        EXISTS (SELECT 1 FROM {_TOKEN_IP} known WHERE known.token_id = log.token_id)
        OR row_number() OVER (PARTITION BY log.token_id ORDER BY min(log.id)) > 1
    FROM log WHERE log.token_id IS NOT NULL
    GROUP BY log.token_id, log.client_ip ORDER BY log.token_id, log.client_ip
    ON CONFLICT (token_id, client_ip) DO UPDATE SET
        last_seen = GREATEST({_TOKEN_IP}.last_seen, EXCLUDED.last_seen),
        requests = {_TOKEN_IP}.requests + EXCLUDED.requests
    RETURNING first_log_id, (xmax = 0) AND is_new_on_token AS is_new
), channel_usage AS (
    INSERT INTO {_CHANNEL} (channel_id, bucket, requests, failures)
    SELECT channel_id, date_trunc('hour', created_at, 'UTC'), count(*), 0
    FROM log WHERE channel_id IS NOT NULL AND status_code < 500
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (channel_id, bucket) DO UPDATE SET
        requests = {_CHANNEL}.requests + EXCLUDED.requests
    RETURNING 1
), platform_usage AS (
    INSERT INTO {_PLATFORM} ({_PLATFORM_COLUMNS})
    {_platform_select("log")} ORDER BY 1, 2, 3, 4
    {_PLATFORM_INCREMENT}
    RETURNING 1
), account_usage AS (
    INSERT INTO {_ACCOUNT} ({_ACCOUNT_COLUMNS})
    {_account_select("log")} ORDER BY 1, 2
    {_ACCOUNT_INCREMENT}
    RETURNING 1
)"""  # noqa: S608 (table names come from our models)

# What the settle statement selects after its own columns: the log rows whose
# address is new on their token (for the "new IP" email).
SETTLE_SELECT = "(SELECT array_agg(first_log_id) FROM token_ip WHERE is_new)"


def bucket_start(moment: datetime, unit: str) -> datetime:
    """Return the start (UTC) of the minute, hour or day `moment` falls in."""
    if unit == "minute":
        return moment.replace(second=0, microsecond=0)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"Unknown bucket unit {unit!r}.")


def rollups_record(*, log: RequestLog) -> bool:
    """Add one settled row to every rollup; return True if its IP is new on its token.

    The ORM path of `billing.settlement` calls this inside its transaction; the SQL is the
    same upsert as `SETTLE_CTE`, with buckets computed here (SQLite has no date_trunc).
    """
    created_at = log.created_at.astimezone(UTC)
    with connection.cursor() as cursor:
        for unit, table in BUCKET_TABLES.items():
            cursor.execute(
                f"INSERT INTO {table} ({_BUCKET_COLUMNS}) "  # noqa: S608
                f"VALUES (%s, %s, %s, %s, %s, 1, %s, %s, %s) {_bucket_increment(table)}",
                [
                    log.user_id,
                    log.token_id or 0,
                    log.model,
                    log.status_code,
                    bucket_start(created_at, unit),
                    log.prompt_tokens,
                    log.completion_tokens,
                    log.cost,
                ],
            )
        cursor.execute(
            f"INSERT INTO {_IP_HOUR} ({_IP_COLUMNS}) "  # noqa: S608
            f"VALUES (%s, %s, %s, %s, %s, %s, 1, %s, %s, %s) {_IP_INCREMENT}",
            [
                log.user_id,
                log.client_ip,
                bucket_start(created_at, "hour"),
                log.token_id or 0,
                log.model,
                log.status_code,
                log.prompt_tokens,
                log.completion_tokens,
                log.cost,
            ],
        )
    if log.channel_id is not None and log.status_code < 500:
        channel_attempt_record(channel_id=log.channel_id, failed=False, at=created_at)
    _days_record(log=log, day=bucket_start(created_at, "day"))
    if log.token_id is None:
        return False
    return _token_ip_record(log=log, token_id=log.token_id)


def _days_record(*, log: RequestLog, day: datetime) -> None:
    """Add one settled row to its platform day and its account day."""
    errors = 1 if log.status_code >= 400 else 0
    sums = [errors, log.prompt_tokens, log.completion_tokens, log.cost]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_PLATFORM} ({_PLATFORM_COLUMNS}) "  # noqa: S608
            f"VALUES (%s, %s, %s, COALESCE((SELECT pricing_group_id FROM {_USER} "
            f"WHERE id = %s), 0), 1, %s, %s, %s, %s) {_PLATFORM_INCREMENT}",
            [day, log.model, log.channel_id or 0, log.user_id, *sums],
        )
        cursor.execute(
            f"INSERT INTO {_ACCOUNT} ({_ACCOUNT_COLUMNS}) "  # noqa: S608
            f"VALUES (%s, %s, 1, %s, %s, %s, %s) {_ACCOUNT_INCREMENT}",
            [day, log.user_id, *sums],
        )


def _token_ip_record(*, log: RequestLog, token_id: int) -> bool:
    known = TokenIp.objects.filter(token_id=token_id)
    is_new_on_token = known.exists()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_TOKEN_IP} (token_id, client_ip, first_log_id, first_seen, "  # noqa: S608
            "last_seen, requests, is_new_on_token) VALUES (%s, %s, %s, %s, %s, 1, %s) "
            f"ON CONFLICT (token_id, client_ip) DO NOTHING",
            [token_id, log.client_ip, log.pk, log.created_at, log.created_at, is_new_on_token],
        )
        inserted = cursor.rowcount == 1
    if not inserted:
        TokenIp.objects.filter(token_id=token_id, client_ip=log.client_ip).update(
            requests=F("requests") + 1, last_seen=log.created_at
        )
    return inserted and is_new_on_token


def channel_attempt_record(*, channel_id: int, failed: bool, at: datetime | None = None) -> None:
    """Count one attempt on a relay channel (and one failure if it failed) in its hour."""
    bucket = bucket_start(at or timezone.now(), "hour")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_CHANNEL} (channel_id, bucket, requests, failures) "  # noqa: S608
            "VALUES (%s, %s, 1, %s) ON CONFLICT (channel_id, bucket) DO UPDATE SET "
            f"requests = {_CHANNEL}.requests + 1, "
            f"failures = {_CHANNEL}.failures + EXCLUDED.failures",
            [channel_id, bucket, 1 if failed else 0],
        )


def rollup_rebuild(*, since: datetime | None = None) -> int:
    """Recompute every rollup from the raw rows created at or after `since`; return rows read.

    `since` defaults to the start of the oldest raw row's day, or the next day when
    retention already pruned part of it (older rollups stay: their raw rows are gone).
    Settles wait while it runs: the rollup tables are locked for its transaction, so
    a request settled meanwhile is counted once, after it.
    """
    oldest = RequestLog.objects.aggregate(oldest=Min("created_at"))["oldest"]
    if oldest is None:
        return 0
    if since is None:
        since = bucket_start(oldest.astimezone(UTC), "day")
        # Day rollups older than every raw row: retention pruned part of the oldest day.
        if since < oldest and UsageDay.objects.filter(bucket__lt=since).exists():
            since += timedelta(days=1)
    since = bucket_start(since.astimezone(UTC), "day")
    with transaction.atomic():
        if connection.vendor == "postgresql":
            return _rebuild_with_sql(since)
        return _rebuild_with_orm(since)


def _rebuild_with_sql(since: datetime) -> int:
    tables = [*BUCKET_TABLES.values(), _IP_HOUR, _TOKEN_IP, _CHANNEL, _PLATFORM, _ACCOUNT]
    with connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {', '.join(tables)} IN EXCLUSIVE MODE")
        for table in [*BUCKET_TABLES.values(), _IP_HOUR, _PLATFORM, _ACCOUNT]:
            cursor.execute(f"DELETE FROM {table} WHERE bucket >= %s", [since])  # noqa: S608
        cursor.execute(
            f"INSERT INTO {BUCKET_TABLES['minute']} ({_BUCKET_COLUMNS}) "  # noqa: S608
            "SELECT user_id, COALESCE(token_id, 0), model, status_code, "
            "date_trunc('minute', created_at, 'UTC'), count(*), sum(prompt_tokens), "
            f"sum(completion_tokens), sum(cost) FROM {_LOG} WHERE created_at >= %s "
            "GROUP BY 1, 2, 3, 4, 5",
            [since],
        )
        for coarse, fine, unit in (("hour", "minute", "hour"), ("day", "hour", "day")):
            cursor.execute(
                f"INSERT INTO {BUCKET_TABLES[coarse]} ({_BUCKET_COLUMNS}) "  # noqa: S608
                "SELECT user_id, token_id, model, status_code, "
                f"date_trunc('{unit}', bucket, 'UTC'), "
                "sum(requests), sum(prompt_tokens), sum(completion_tokens), sum(cost) "
                f"FROM {BUCKET_TABLES[fine]} WHERE bucket >= %s GROUP BY 1, 2, 3, 4, 5",
                [since],
            )
        cursor.execute(
            f"INSERT INTO {_IP_HOUR} ({_IP_COLUMNS}) "  # noqa: S608
            "SELECT user_id, client_ip, date_trunc('hour', created_at, 'UTC'), "
            "COALESCE(token_id, 0), model, status_code, count(*), sum(prompt_tokens), "
            f"sum(completion_tokens), sum(cost) FROM {_LOG} WHERE created_at >= %s "
            "GROUP BY 1, 2, 3, 4, 5, 6",
            [since],
        )
        cursor.execute(
            f"INSERT INTO {_TOKEN_IP} (token_id, client_ip, first_log_id, first_seen, "  # noqa: S608
            "last_seen, requests, is_new_on_token) "
            "SELECT token_id, client_ip, min(id), min(created_at), max(created_at), count(*), "
            "row_number() OVER (PARTITION BY token_id ORDER BY min(id)) > 1 "
            f"FROM {_LOG} WHERE token_id IS NOT NULL AND created_at >= %s "
            "GROUP BY token_id, client_ip ON CONFLICT (token_id, client_ip) DO NOTHING",
            [since],
        )
        cursor.execute(
            f"UPDATE {_CHANNEL} SET requests = failures WHERE bucket >= %s",  # noqa: S608
            [since],
        )
        cursor.execute(
            f"INSERT INTO {_CHANNEL} (channel_id, bucket, requests, failures) "  # noqa: S608
            "SELECT channel_id, date_trunc('hour', created_at, 'UTC'), count(*), 0 "
            f"FROM {_LOG} WHERE channel_id IS NOT NULL AND status_code < 500 "
            "AND created_at >= %s GROUP BY 1, 2 ON CONFLICT (channel_id, bucket) "
            f"DO UPDATE SET requests = {_CHANNEL}.requests + EXCLUDED.requests",
            [since],
        )
        days_fill(cursor, since=since)
        cursor.execute(f"SELECT count(*) FROM {_LOG} WHERE created_at >= %s", [since])  # noqa: S608
        return cursor.fetchone()[0]


def days_fill(cursor: Any, *, since: datetime | None = None) -> None:
    """Sum the raw rows created at or after `since` (all of them: None) into the platform
    and account days, which must have no rows from `since` on (PostgreSQL).

    `rollup_rebuild` calls it after deleting them.
    """
    where = "WHERE log.created_at >= %s" if since is not None else ""
    parameters = [since] if since is not None else []
    cursor.execute(
        f"INSERT INTO {_PLATFORM} ({_PLATFORM_COLUMNS}) {_platform_select(_LOG, where)}",
        parameters,
    )
    cursor.execute(
        f"INSERT INTO {_ACCOUNT} ({_ACCOUNT_COLUMNS}) {_account_select(f'{_LOG} log', where)}",
        parameters,
    )


def _rebuild_with_orm(since: datetime) -> int:
    for model in (UsageMinute, UsageHour, UsageDay, UsageIpHour, PlatformDay, AccountDay):
        model.objects.filter(bucket__gte=since).delete()
    ChannelHour.objects.filter(bucket__gte=since).update(requests=F("failures"))
    rows = 0
    for log in RequestLog.objects.filter(created_at__gte=since).order_by("id").iterator():
        rows += 1
        rollups_record(log=log)
    return rows


def rollup_prune(*, before: datetime, batch_size: int = 5000) -> int:
    """Delete minute and hour rollups and channel hours older than `before`; keep days.

    In batches of `batch_size` rows, each its own short statement.
    """
    deleted = 0
    for model in (UsageMinute, UsageHour, UsageIpHour, ChannelHour):
        while True:
            batch = list(
                model.objects.filter(bucket__lt=before).values_list("pk", flat=True)[:batch_size]
            )
            if not batch:
                break
            deleted += model.objects.filter(pk__in=batch).delete()[0]
    return deleted
