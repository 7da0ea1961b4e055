"""Recompute the usage rollups and IP hours from the raw rows (after 0004 emptied them).

Self-contained on purpose (no import of logs.rollups): one INSERT ... SELECT per
table on PostgreSQL, a Python pass over the rows elsewhere. On a large table run
`manage.py rollup_rebuild` instead; this is the same computation.
"""

from collections import defaultdict

from django.db import migrations

BUCKETS = {"minute": "logs_usageminute", "hour": "logs_usagehour", "day": "logs_usageday"}


def _postgresql(schema_editor) -> None:
    for unit, table in BUCKETS.items():
        schema_editor.execute(
            f"INSERT INTO {table} (user_id, token_id, model, status_code, bucket, requests, "  # noqa: S608
            "prompt_tokens, completion_tokens, cost) SELECT user_id, COALESCE(token_id, 0), "
            f"model, status_code, date_trunc('{unit}', created_at, 'UTC'), count(*), "
            "sum(prompt_tokens), sum(completion_tokens), sum(cost) FROM logs_requestlog "
            "GROUP BY 1, 2, 3, 4, 5"
        )
    schema_editor.execute(
        "INSERT INTO logs_usageiphour (user_id, client_ip, bucket, requests, prompt_tokens, "
        "completion_tokens, cost) SELECT user_id, client_ip, date_trunc('hour', created_at, "
        "'UTC'), count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost) "
        "FROM logs_requestlog GROUP BY 1, 2, 3"
    )


def _other(apps) -> None:
    RequestLog = apps.get_model("logs", "RequestLog")
    models = {
        "minute": apps.get_model("logs", "UsageMinute"),
        "hour": apps.get_model("logs", "UsageHour"),
        "day": apps.get_model("logs", "UsageDay"),
    }
    truncate = {
        "minute": lambda moment: moment.replace(second=0, microsecond=0),
        "hour": lambda moment: moment.replace(minute=0, second=0, microsecond=0),
        "day": lambda moment: moment.replace(hour=0, minute=0, second=0, microsecond=0),
    }
    sums: dict = defaultdict(lambda: [0, 0, 0, 0])
    ip_sums: dict = defaultdict(lambda: [0, 0, 0, 0])
    for row in RequestLog.objects.order_by("id").iterator():
        values = (1, row.prompt_tokens, row.completion_tokens, row.cost)
        for unit in models:
            key = (unit, row.user_id, row.token_id or 0, row.model, row.status_code)
            key += (truncate[unit](row.created_at),)
            sums[key] = [a + b for a, b in zip(sums[key], values, strict=True)]
        ip_key = (row.user_id, row.client_ip, truncate["hour"](row.created_at))
        ip_sums[ip_key] = [a + b for a, b in zip(ip_sums[ip_key], values, strict=True)]
    for (unit, user_id, token_id, model, status_code, bucket), values in sums.items():
        models[unit].objects.create(
            user_id=user_id,
            token_id=token_id,
            model=model,
            status_code=status_code,
            bucket=bucket,
            requests=values[0],
            prompt_tokens=values[1],
            completion_tokens=values[2],
            cost=values[3],
        )
    UsageIpHour = apps.get_model("logs", "UsageIpHour")
    for (user_id, client_ip, bucket), values in ip_sums.items():
        UsageIpHour.objects.create(
            user_id=user_id,
            client_ip=client_ip,
            bucket=bucket,
            requests=values[0],
            prompt_tokens=values[1],
            completion_tokens=values[2],
            cost=values[3],
        )


def recompute(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        _postgresql(schema_editor)
    else:
        _other(apps)


def empty(apps, schema_editor) -> None:
    # Going back: 0004's reverse needs empty tables (rows keyed by status code do
    # not fit its key); `rollup_rebuild` refills them after.
    for name in ("UsageMinute", "UsageHour", "UsageDay", "UsageIpHour"):
        apps.get_model("logs", name).objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("logs", "0004_rollups_by_status_code_and_ip_hours")]

    operations = [migrations.RunPython(recompute, empty)]
