"""Music as a kind of its own, and the kind of models known by their names.

Video and music models need the vendors' task APIs, which the relay does not offer yet
(`CatalogModel.COMING_SOON_KINDS`): they are not listed nor callable, and the pricing
page marks them coming soon. Music models were filed as audio; models whose name says
what they make but that were left at the default kind (chat, e.g. added in the admin)
get the kind their name says. A model an admin gave another kind keeps it.
"""

import re

from django.db import migrations, models

# What a model's name says it makes (matched against the lowercased name).
KIND_PATTERNS = [
    ("music", re.compile(r"^(suno|udio|lyria)\b")),
    ("video", re.compile(r"^(sora|veo|kling|runway|hailuo|vidu|seedance)\b")),
    (
        "image",
        re.compile(
            r"^(dall-e|gpt-image|flux|imagen|stable-diffusion|sd3|midjourney|recraft|ideogram)\b"
        ),
    ),
    ("audio", re.compile(r"^(tts-|whisper)|-(tts|transcribe)$")),
    ("embedding", re.compile(r"embedding|^embed-|^bge-")),
]


def kind_of(name: str) -> str | None:
    """Return the kind `name` says, or None."""
    lowered = name.lower()
    for kind, pattern in KIND_PATTERNS:
        if pattern.search(lowered):
            return kind
    return None


def kinds_from_names(apps, schema_editor):
    CatalogModel = apps.get_model("models_catalog", "CatalogModel")
    for model in CatalogModel.objects.filter(kind__in=["chat", "audio"]).only("pk", "name", "kind"):
        kind = kind_of(model.name)
        if kind is None or kind == model.kind:
            continue
        # A chat model (the default) takes any kind its name says; an audio model only
        # moves to music.
        if model.kind == "chat" or kind == "music":
            CatalogModel.objects.filter(pk=model.pk).update(kind=kind)


def music_back_to_audio(apps, schema_editor):
    CatalogModel = apps.get_model("models_catalog", "CatalogModel")
    CatalogModel.objects.filter(kind="music").update(kind="audio")


class Migration(migrations.Migration):
    dependencies = [
        ("models_catalog", "0007_pricinggroup_line"),
    ]

    operations = [
        migrations.AlterField(
            model_name="catalogmodel",
            name="kind",
            field=models.CharField(
                choices=[
                    ("chat", "Chat"),
                    ("embedding", "Embedding"),
                    ("image", "Image"),
                    ("audio", "Audio"),
                    ("video", "Video"),
                    ("music", "Music"),
                ],
                default="chat",
                help_text=(
                    "What the model makes, which decides the endpoint it is called at. Video "
                    "and music models are shown as coming soon and cannot be called yet."
                ),
                max_length=16,
                verbose_name="kind",
            ),
        ),
        migrations.RunPython(kinds_from_names, music_back_to_audio, elidable=False),
    ]
