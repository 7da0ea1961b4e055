"""Key the IP hours like the other buckets: (user, IP, hour, token, model, status code).

Rows keyed by (user, IP, hour) cannot be split by token, model and status code, so
the table is emptied, its key changed, and its rows recomputed from the raw rows.
Reversible: going back empties it again and recomputes the (user, IP, hour) rows.

Self-contained on purpose (no import of logs.rollups): one INSERT ... SELECT on
PostgreSQL, a Python pass over the rows elsewhere. It holds the table locked for
the recompute (≈ 1 minute at 11M rows, see bench/logs/README.md); on a larger table
run it in the maintenance window.
"""

from collections import defaultdict

from django.db import migrations, models

_SUMS = "count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost)"
_HOUR = "date_trunc('hour', created_at, 'UTC')"


def _hour(moment):
    return moment.replace(minute=0, second=0, microsecond=0)


def _recompute(apps, schema_editor, *, by_token_model_status: bool) -> None:
    if schema_editor.connection.vendor == "postgresql":
        if by_token_model_status:
            schema_editor.execute(
                "INSERT INTO logs_usageiphour (user_id, client_ip, bucket, token_id, model, "  # noqa: S608
                "status_code, requests, prompt_tokens, completion_tokens, cost) "
                f"SELECT user_id, client_ip, {_HOUR}, COALESCE(token_id, 0), model, status_code, "
                f"{_SUMS} FROM logs_requestlog GROUP BY 1, 2, 3, 4, 5, 6"
            )
        else:
            schema_editor.execute(
                "INSERT INTO logs_usageiphour (user_id, client_ip, bucket, requests, "  # noqa: S608
                f"prompt_tokens, completion_tokens, cost) SELECT user_id, client_ip, {_HOUR}, "
                f"{_SUMS} FROM logs_requestlog GROUP BY 1, 2, 3"
            )
        # Fresh statistics, so the first totals after the migration plan an index read.
        schema_editor.execute("ANALYZE logs_usageiphour")
        return
    RequestLog = apps.get_model("logs", "RequestLog")
    UsageIpHour = apps.get_model("logs", "UsageIpHour")
    sums: dict = defaultdict(lambda: [0, 0, 0, 0])
    for row in RequestLog.objects.order_by("id").iterator():
        key: tuple = (row.user_id, row.client_ip, _hour(row.created_at))
        if by_token_model_status:
            key += (row.token_id or 0, row.model, row.status_code)
        values = (1, row.prompt_tokens, row.completion_tokens, row.cost)
        sums[key] = [a + b for a, b in zip(sums[key], values, strict=True)]
    for key, values in sums.items():
        fields = dict(zip(("user_id", "client_ip", "bucket"), key[:3], strict=True))
        if by_token_model_status:
            fields |= dict(zip(("token_id", "model", "status_code"), key[3:], strict=True))
        UsageIpHour.objects.create(
            **fields,
            requests=values[0],
            prompt_tokens=values[1],
            completion_tokens=values[2],
            cost=values[3],
        )


def empty(apps, schema_editor) -> None:
    apps.get_model("logs", "UsageIpHour").objects.all().delete()


def recompute_by_ip(apps, schema_editor) -> None:
    _recompute(apps, schema_editor, by_token_model_status=False)


def recompute_by_ip_token_model_status(apps, schema_editor) -> None:
    _recompute(apps, schema_editor, by_token_model_status=True)


class Migration(migrations.Migration):
    dependencies = [("logs", "0005_rollups_recompute")]

    operations = [
        # Empty first: the new columns' defaults would otherwise make up a key.
        migrations.RunPython(empty, recompute_by_ip),
        migrations.RemoveConstraint(model_name="usageiphour", name="logs_usageiphour_key"),
        migrations.AddField(
            model_name="usageiphour",
            name="token_id",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="usageiphour",
            name="model",
            field=models.CharField(default="", max_length=200),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="usageiphour",
            name="status_code",
            field=models.PositiveSmallIntegerField(default=200),
        ),
        migrations.AddConstraint(
            model_name="usageiphour",
            constraint=models.UniqueConstraint(
                fields=("user_id", "client_ip", "bucket", "token_id", "model", "status_code"),
                name="logs_usageiphour_key",
            ),
        ),
        migrations.RunPython(recompute_by_ip_token_model_status, empty),
    ]
