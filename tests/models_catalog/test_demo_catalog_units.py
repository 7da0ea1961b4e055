"""`make run` on a database an earlier demo catalog made: `load_demo_catalog` (run at every
start) brings a demo model still at the earlier catalog's price to its unit price, through
the one price-change service, and leaves every price an admin set."""

from decimal import Decimal

import pytest
from django.core.management import call_command

from announcements.models import Announcement
from models_catalog import services
from models_catalog.models import CatalogModel, PriceChange

pytestmark = pytest.mark.django_db

# As the demo catalog wrote them before prices per unit (commit 413b61f).
EARLIER = {
    "tts-1": {"model_ratio": Decimal("7.5")},
    "whisper-1": {"price_per_call": 6_000},
    "dall-e-3": {"price_per_call": 40_000},
    "gpt-image-1": {"price_per_call": 42_000},
}
UNIT_FIELDS = {
    "model_ratio": None,
    "price_per_call": None,
    "price_per_image": None,
    "price_per_million_characters": None,
    "price_per_minute": None,
}


def earlier_catalog(*names: str) -> None:
    """Put these demo models back to the earlier catalog's rows (a database made then)."""
    for name in names:
        CatalogModel.objects.filter(name=name).update(
            **{**UNIT_FIELDS, **EARLIER[name]}, completion_ratio=Decimal(1), cached_ratio=None
        )


def test_tts_1_at_the_earlier_per_token_price_goes_to_its_price_per_1m_characters(catalog):
    earlier_catalog("tts-1")

    call_command("load_demo_catalog", verbosity=0)

    tts = CatalogModel.objects.get(name="tts-1")
    assert tts.model_ratio is None
    assert tts.price_per_million_characters == 15_000_000
    [change] = PriceChange.objects.filter(catalog_model=tts)
    assert change.source == PriceChange.Source.CATALOG
    assert change.changed_by is None
    assert change.status == PriceChange.Status.APPLIED
    assert change.old_model_ratio == Decimal("7.5")
    assert change.new_model_ratio is None
    assert (change.old_price_per_million_characters, change.new_price_per_million_characters) == (
        None,
        15_000_000,
    )
    assert "tts-1" in change.reason
    assert "per 1M characters" in change.reason
    # Announced like any change.
    assert Announcement.objects.filter(title__contains="tts-1").exists()


def test_every_earlier_demo_price_goes_to_its_unit_once(catalog):
    earlier_catalog(*EARLIER)

    call_command("load_demo_catalog", verbosity=0)
    call_command("load_demo_catalog", verbosity=0)

    prices = {
        model.name: model
        for model in CatalogModel.objects.filter(name__in=EARLIER).order_by("name")
    }
    assert prices["whisper-1"].price_per_minute == 6_000
    assert prices["dall-e-3"].price_per_image["hd 1024x1792"] == 120_000
    assert prices["gpt-image-1"].price_per_image["low"] == 11_000
    assert all(model.price_per_call is None for model in prices.values())
    assert PriceChange.objects.filter(source=PriceChange.Source.CATALOG).count() == 4


def test_a_price_an_admin_set_is_kept(catalog, admin_user):
    earlier_catalog("tts-1", "whisper-1")
    # An admin priced tts-1 per token on purpose…
    CatalogModel.objects.filter(name="tts-1").update(model_ratio=Decimal(8))
    # …and changed whisper-1, then changed it back to the earlier price.
    whisper = CatalogModel.objects.get(name="whisper-1")
    for price in (7_000, 6_000):
        services.price_change_record(
            target=whisper,
            new_prices={"price_per_call": price},
            reason="Vendor price",
            changed_by=admin_user,
            source=PriceChange.Source.FORM,
        )

    call_command("load_demo_catalog", verbosity=0)

    tts = CatalogModel.objects.get(name="tts-1")
    assert (tts.model_ratio, tts.price_per_million_characters) == (Decimal(8), None)
    whisper.refresh_from_db()
    assert (whisper.price_per_call, whisper.price_per_minute) == (6_000, None)
    assert not PriceChange.objects.filter(source=PriceChange.Source.CATALOG).exists()


def test_a_current_catalog_changes_nothing(catalog):
    call_command("load_demo_catalog", verbosity=0)

    assert not PriceChange.objects.exists()


def test_only_the_demo_catalog_changes_a_price_without_a_person(catalog):
    with pytest.raises(PermissionError):
        services.price_change_record(
            target=catalog["gpt-4o"],
            new_prices={"model_ratio": Decimal(2)},
            reason="No one",
            changed_by=None,
            source=PriceChange.Source.FORM,
        )

    assert CatalogModel.objects.get(name="gpt-4o").model_ratio == Decimal("1.25")
    assert not PriceChange.objects.exists()
