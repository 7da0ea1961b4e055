"""Fill the platform and account days (0010) from what is already recorded.

Account days come from the day rollups (older days included: retention keeps them);
platform days from the raw rows still kept (the day rollups have no channel), with
each user's pricing group of today. Self-contained on purpose (no import of
logs.rollups): one INSERT ... SELECT per table on PostgreSQL, a Python pass elsewhere.
"""

from collections import defaultdict

from django.db import migrations


def _postgresql(schema_editor) -> None:
    schema_editor.execute(
        "INSERT INTO logs_accountday (bucket, user_id, requests, errors, prompt_tokens, "
        "completion_tokens, cost) SELECT bucket, user_id, sum(requests), "
        "COALESCE(sum(requests) FILTER (WHERE status_code >= 400), 0), sum(prompt_tokens), "
        "sum(completion_tokens), sum(cost) FROM logs_usageday GROUP BY 1, 2"
    )
    schema_editor.execute(
        "INSERT INTO logs_platformday (bucket, model, channel_id, pricing_group_id, requests, "
        "errors, prompt_tokens, completion_tokens, cost) "
        "SELECT date_trunc('day', log.created_at, 'UTC'), log.model, "
        "COALESCE(log.channel_id, 0), COALESCE(u.pricing_group_id, 0), count(*), "
        "count(*) FILTER (WHERE log.status_code >= 400), sum(log.prompt_tokens), "
        "sum(log.completion_tokens), sum(log.cost) "
        "FROM logs_requestlog log LEFT JOIN accounts_user u ON u.id = log.user_id "
        "GROUP BY 1, 2, 3, 4"
    )


def _other(apps) -> None:
    UsageDay = apps.get_model("logs", "UsageDay")
    RequestLog = apps.get_model("logs", "RequestLog")
    User = apps.get_model("accounts", "User")
    accounts: dict = defaultdict(lambda: [0, 0, 0, 0, 0])
    for row in UsageDay.objects.iterator():
        errors = row.requests if row.status_code >= 400 else 0
        values = (row.requests, errors, row.prompt_tokens, row.completion_tokens, row.cost)
        key = (row.bucket, row.user_id)
        accounts[key] = [a + b for a, b in zip(accounts[key], values, strict=True)]
    groups = dict(User.objects.values_list("pk", "pricing_group_id"))
    platform: dict = defaultdict(lambda: [0, 0, 0, 0, 0])
    for row in RequestLog.objects.order_by("id").iterator():
        day = row.created_at.replace(hour=0, minute=0, second=0, microsecond=0)
        key = (day, row.model, row.channel_id or 0, groups.get(row.user_id) or 0)
        errors = 1 if row.status_code >= 400 else 0
        values = (1, errors, row.prompt_tokens, row.completion_tokens, row.cost)
        platform[key] = [a + b for a, b in zip(platform[key], values, strict=True)]
    AccountDay = apps.get_model("logs", "AccountDay")
    AccountDay.objects.bulk_create(
        AccountDay(
            bucket=bucket,
            user_id=user_id,
            requests=values[0],
            errors=values[1],
            prompt_tokens=values[2],
            completion_tokens=values[3],
            cost=values[4],
        )
        for (bucket, user_id), values in accounts.items()
    )
    PlatformDay = apps.get_model("logs", "PlatformDay")
    PlatformDay.objects.bulk_create(
        PlatformDay(
            bucket=bucket,
            model=model,
            channel_id=channel_id,
            pricing_group_id=group_id,
            requests=values[0],
            errors=values[1],
            prompt_tokens=values[2],
            completion_tokens=values[3],
            cost=values[4],
        )
        for (bucket, model, channel_id, group_id), values in platform.items()
    )


def fill(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        _postgresql(schema_editor)
    else:
        _other(apps)


def empty(apps, schema_editor) -> None:
    apps.get_model("logs", "PlatformDay").objects.all().delete()
    apps.get_model("logs", "AccountDay").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0008_alter_token_options_alter_tokenformnonce_options_and_more"),
        ("logs", "0010_platform_and_account_days"),
    ]

    operations = [migrations.RunPython(fill, empty)]
