from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("models_catalog", "0004_price_batch_fanned_out_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="catalogmodel",
            name="completion_reserve",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Completion tokens a request's hold assumes when it sets no max_tokens; empty for the relay's default (4,096). The answer is charged in full either way.",
                null=True,
            ),
        ),
    ]
