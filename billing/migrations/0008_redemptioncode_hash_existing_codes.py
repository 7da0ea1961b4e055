"""Hash the redemption codes stored in plaintext, then empty their plaintext column.

The normalisation and hash are copied from `billing.recharge.code_normalise` and
`code_hash` as they are today: a migration must not change with the app's code.

Backwards, the plaintext cannot come back. `code` was unique and not null before
0007, so "blank" cannot be written to every row: each gets `unrecoverable:<id>`
instead, in lower case, which the older redeem code (it upper-cases what users
type) can never match. The codes are then unusable until minted again.
"""

import hashlib

from django.db import migrations

BATCH = 1000


def _normalise(code: str) -> str:
    return "".join(code.split()).replace("-", "").upper()


def hash_codes(apps, schema_editor):
    RedemptionCode = apps.get_model("billing", "RedemptionCode")
    rows = RedemptionCode.objects.filter(code__isnull=False).only("pk", "code").order_by("pk")
    while True:
        batch = list(rows[:BATCH])
        if not batch:
            return
        for row in batch:
            normalised = _normalise(row.code)
            row.code_hash = hashlib.sha256(normalised.encode()).hexdigest()
            row.code_prefix = normalised[:4]
            row.code = None
        RedemptionCode.objects.bulk_update(batch, ["code_hash", "code_prefix", "code"])


def mark_codes_unrecoverable(apps, schema_editor):
    RedemptionCode = apps.get_model("billing", "RedemptionCode")
    for row in RedemptionCode.objects.filter(code__isnull=True).only("pk").iterator():
        RedemptionCode.objects.filter(pk=row.pk).update(code=f"unrecoverable:{row.pk}")


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_redemptioncode_code_hash"),
    ]

    operations = [
        migrations.RunPython(hash_codes, mark_codes_unrecoverable, elidable=False),
    ]
