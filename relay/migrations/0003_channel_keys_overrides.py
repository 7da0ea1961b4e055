"""Several API keys per channel (their endings replace the one key's last four), and
the header and parameter overrides.

A key stored before is read as a channel's only key: the encrypted secret is the same,
so only its ending moves from `api_key_last4` into `api_key_endings`.
"""

from django.db import migrations, models

import relay.overrides


def endings_from_last4(apps, schema_editor):
    Channel = apps.get_model("relay", "Channel")
    for channel in Channel.objects.exclude(api_key_last4="").only("pk", "api_key_last4"):
        Channel.objects.filter(pk=channel.pk).update(api_key_endings=[channel.api_key_last4])


def last4_from_endings(apps, schema_editor):
    Channel = apps.get_model("relay", "Channel")
    for channel in Channel.objects.only("pk", "api_key_endings"):
        endings = channel.api_key_endings or []
        if endings:
            Channel.objects.filter(pk=channel.pk).update(api_key_last4=endings[0])


class Migration(migrations.Migration):
    dependencies = [
        ("relay", "0002_alter_channel_options_alter_channel_api_key_last4_and_more"),
    ]

    operations = [
        migrations.AddField(
            model_name="channel",
            name="api_key_endings",
            field=models.JSONField(
                blank=True, default=list, editable=False, verbose_name="api key endings"
            ),
        ),
        migrations.RunPython(endings_from_last4, last4_from_endings),
        migrations.RemoveField(
            model_name="channel",
            name="api_key_last4",
        ),
        migrations.AlterField(
            model_name="channel",
            name="encrypted_api_key",
            field=models.TextField(blank=True, editable=False, verbose_name="encrypted api keys"),
        ),
        migrations.AddField(
            model_name="channel",
            name="header_overrides",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text=(
                    "Extra headers sent upstream, e.g. "
                    '<code>{"OpenAI-Organization": "org-123"}</code>.'
                ),
                validators=[relay.overrides.validate_header_overrides],
                verbose_name="header overrides",
            ),
        ),
        migrations.AddField(
            model_name="channel",
            name="parameter_overrides",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text=(
                    "Request parameters set on every generation sent upstream, "
                    'e.g. <code>{"max_tokens": 4096}</code>.'
                ),
                validators=[relay.overrides.validate_parameter_overrides],
                verbose_name="parameter overrides",
            ),
        ),
    ]
