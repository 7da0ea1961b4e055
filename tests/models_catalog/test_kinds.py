"""The kind of a model: music as its own kind, kinds known from names (the migration), and
video and music models shown as coming soon, never callable (`/v1/models` leaves them out)."""

import importlib

import pytest
from django.apps import apps
from django.urls import reverse

from models_catalog import selectors
from models_catalog.models import CatalogModel, Vendor
from models_catalog.services import catalog_entry_create

pytestmark = pytest.mark.django_db

migration = importlib.import_module("models_catalog.migrations.0008_catalogmodel_kind")
CHINESE = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("suno-v4", "music"),
        ("suno-v3.5", "music"),
        ("udio-v1", "music"),
        ("sora-2", "video"),
        ("sora-2-pro", "video"),
        ("veo-3.0-generate-preview", "video"),
        ("kling-v2", "video"),
        ("dall-e-3", "image"),
        ("gpt-image-1", "image"),
        ("flux-1.1-pro", "image"),
        ("imagen-4.0-generate-001", "image"),
        ("tts-1", "audio"),
        ("tts-1-hd", "audio"),
        ("gpt-4o-mini-tts", "audio"),
        ("whisper-1", "audio"),
        ("gpt-4o-transcribe", "audio"),
        ("text-embedding-3-small", "embedding"),
        ("gemini-embedding-001", "embedding"),
        ("gpt-4o", None),
        ("gpt-4o-audio-preview", None),
        ("claude-sonnet-4-20250514", None),
        ("soraya-chat", None),
        ("deepseek-chat", None),
    ],
)
def test_the_kind_a_name_says(name, kind):
    assert migration.kind_of(name) == kind


def test_the_data_migration_moves_music_and_default_kinds_only():
    vendor = Vendor.objects.create(name="v", display_name="V")
    rows = {
        # name: (kind before, kind after)
        "suno-v4": ("audio", "music"),
        "sora-2": ("chat", "video"),
        "dall-e-3": ("chat", "image"),
        "whisper-1": ("chat", "audio"),
        "text-embedding-3-large": ("chat", "embedding"),
        "gpt-4o": ("chat", "chat"),
        # An admin's choice other than chat stays (but for audio -> music).
        "tts-1": ("image", "image"),
        "veo-3.0-generate-preview": ("audio", "audio"),
    }
    for name, (before, _after) in rows.items():
        CatalogModel.objects.create(name=name, vendor=vendor, kind=before, price_per_call=1)

    migration.kinds_from_names(apps, None)

    assert dict(CatalogModel.objects.values_list("name", "kind")) == {
        name: after for name, (_before, after) in rows.items()
    }
    migration.music_back_to_audio(apps, None)
    assert CatalogModel.objects.get(name="suno-v4").kind == "audio"


def test_the_demo_catalog_files_suno_as_music(catalog):
    assert catalog["suno-v4"].kind == "music"
    assert {name for name, model in catalog.items() if model.is_coming_soon} == {
        "sora-2",
        "veo-3.0-generate-preview",
        "suno-v4",
    }


def test_callable_names_leave_out_video_and_music_and_follow_edits(catalog):
    names = selectors.callable_model_names()

    assert "sora-2" not in names
    assert "suno-v4" not in names
    assert "dall-e-3" in names
    assert "gpt-4o" in names
    assert "sora-2" in selectors.enabled_model_names()

    # An admin changing a model's kind is seen at once (the cache entry is dropped).
    model = CatalogModel.objects.get(name="dall-e-3")
    model.kind = "video"
    model.save()
    assert "dall-e-3" not in selectors.callable_model_names()
    vendor = Vendor.objects.get(name="openai")
    catalog_entry_create(
        entry=CatalogModel(name="sora-3", vendor=vendor, kind="video", price_per_call=1)
    )
    assert "sora-3" not in selectors.callable_model_names()


def test_the_pricing_page_marks_video_and_music_coming_soon(client, catalog):
    html = client.get(reverse("pricing")).content.decode()
    chinese = client.get(reverse("pricing"), **CHINESE).content.decode()
    detail = client.get(reverse("models_catalog:model_detail", args=["sora-2"])).content.decode()

    rows = {row.split("</code>")[0]: row for row in html.split("<code>")[1:]}
    assert "Coming soon" in rows["sora-2"]
    assert "Coming soon" in rows["veo-3.0-generate-preview"]
    assert "Coming soon" in rows["suno-v4"]
    assert "Coming soon" not in rows["dall-e-3"]
    assert "Coming soon" not in rows["gpt-4o"]
    assert html.count("Coming soon") == 3
    assert chinese.count("即将推出") == 3
    assert "Music" in rows["suno-v4"]
    assert "音乐" in chinese
    assert "Coming soon" in detail
    assert "cannot be called for now" in detail


def test_the_pricing_api_says_coming_soon(client, catalog):
    entries = {entry["model"]: entry for entry in client.get("/api/v1/pricing").json()}
    music = client.get("/api/v1/pricing", {"kind": "music"}).json()

    assert entries["sora-2"]["coming_soon"] is True
    assert entries["suno-v4"]["coming_soon"] is True
    assert entries["suno-v4"]["kind"] == "music"
    assert entries["gpt-4o"]["coming_soon"] is False
    assert entries["dall-e-3"]["coming_soon"] is False
    assert [entry["model"] for entry in music] == ["suno-v4"]


def test_the_kind_is_editable_in_the_admin(admin_client, catalog):
    model = catalog["tts-1"]
    page = admin_client.get(
        reverse("admin:models_catalog_catalogmodel_change", args=[model.pk])
    ).content.decode()

    assert 'name="kind"' in page
    assert 'value="music"' in page
