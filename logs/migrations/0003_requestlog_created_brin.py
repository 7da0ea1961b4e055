"""A BRIN index on created_at (PostgreSQL only): a few pages for 100M rows.

Rows arrive in time order, so block ranges map to time ranges: retention and the
admin's time windows read only the blocks of that window. SQLite has no BRIN.
"""

from django.db import migrations

CREATE = (
    "CREATE INDEX IF NOT EXISTS logs_requestlog_created_brin "
    "ON logs_requestlog USING brin (created_at)"
)
DROP = "DROP INDEX IF EXISTS logs_requestlog_created_brin"


def _run(sql: str):
    def operation(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return operation


class Migration(migrations.Migration):
    dependencies = [("logs", "0002_rollups_and_filter_indexes")]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
