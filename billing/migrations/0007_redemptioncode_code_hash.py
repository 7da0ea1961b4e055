from django.db import migrations, models


class Migration(migrations.Migration):
    """Add the hash and display prefix of redemption codes; let the plaintext column be empty.

    0008 fills the new columns and empties `code`; 0009 drops it.
    """

    dependencies = [
        ("billing", "0006_stripeevent_problem"),
    ]

    operations = [
        migrations.AddField(
            model_name="redemptioncode",
            name="code_hash",
            field=models.CharField(max_length=64, null=True, unique=True),
        ),
        migrations.AddField(
            model_name="redemptioncode",
            name="code_prefix",
            field=models.CharField(default="", max_length=4),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="redemptioncode",
            name="code",
            field=models.CharField(blank=True, max_length=64, null=True, unique=True),
        ),
    ]
