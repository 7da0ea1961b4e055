from django.db import migrations, models


class Migration(migrations.Migration):
    """Drop the emptied plaintext column; every code now has its hash; minting needs its own permission."""

    dependencies = [
        ("billing", "0008_redemptioncode_hash_existing_codes"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="redemptioncode",
            name="code",
        ),
        migrations.AlterField(
            model_name="redemptioncode",
            name="code_hash",
            field=models.CharField(max_length=64, unique=True),
        ),
        migrations.AlterModelOptions(
            name="redemptioncode",
            options={
                "ordering": ["-created_at", "id"],
                "permissions": [
                    ("mint_redemption_code", "Can mint redemption codes (and see them once)")
                ],
            },
        ),
    ]
