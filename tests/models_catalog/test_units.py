# ruff: noqa: RUF001, RUF003 (the multiplication sign is what the breakdown shows)
"""Prices per unit: per image (by size and quality), per 1M characters, per minute.

Each unit's cost is pinned to the micro-USD with a group ratio; prices change only through
the one price-change service (recorded, announced) and show on the pricing page.
"""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse
from hypothesis import example, given
from hypothesis import strategies as st

from announcements.models import Announcement
from logs.breakdown import cost_breakdown
from logs.models import RequestLog
from models_catalog import selectors, services
from models_catalog.display import change_lines
from models_catalog.models import CatalogModel, PriceChange, PricingGroup
from models_catalog.pricing import (
    MAX_COST_MICRO,
    UNIT_CHARACTER,
    UNIT_IMAGE,
    UNIT_SECOND,
    image_price,
    image_price_table_problem,
    unit_cost,
)

DALL_E_3 = {"*": 40_000, "1024x1792": 80_000, "hd": 80_000, "hd 1024x1792": 120_000}


# --- The formula ---------------------------------------------------------------------


def test_per_image_cost_is_price_times_images_times_group_ratio():
    # Given $0.04 an image and a group at ×0.9, when 3 images are made: 3 × 40,000 × 0.9.
    assert unit_cost(unit=UNIT_IMAGE, unit_price=40_000, count=3, group_ratio=Decimal("0.9")) == (
        108_000
    )
    assert unit_cost(unit=UNIT_IMAGE, unit_price=40_000, count=1, group_ratio=Decimal(1)) == 40_000


def test_per_million_characters_cost_rounds_up_once():
    # $15 per 1M characters: 11 characters are 165 micro-USD; at ×0.9, 148.5 → 149.
    assert (
        unit_cost(unit=UNIT_CHARACTER, unit_price=15_000_000, count=11, group_ratio=Decimal(1))
        == 165
    )
    assert (
        unit_cost(unit=UNIT_CHARACTER, unit_price=15_000_000, count=11, group_ratio=Decimal("0.9"))
        == 149
    )
    # A single character at $15 / 1M is 15 micro-USD.
    assert (
        unit_cost(unit=UNIT_CHARACTER, unit_price=15_000_000, count=1, group_ratio=Decimal(1)) == 15
    )


def test_per_minute_cost_is_billed_by_the_second():
    # $0.006 a minute = 100 micro-USD a second: 61 seconds cost 6,100; at ×1.5, 9,150.
    assert unit_cost(unit=UNIT_SECOND, unit_price=6_000, count=61, group_ratio=Decimal(1)) == 6_100
    assert (
        unit_cost(unit=UNIT_SECOND, unit_price=6_000, count=61, group_ratio=Decimal("1.5")) == 9_150
    )
    # 7 seconds at $0.001 a minute: 116.67 → 117.
    assert unit_cost(unit=UNIT_SECOND, unit_price=1_000, count=7, group_ratio=Decimal(1)) == 117


def test_nothing_counted_still_costs_the_least_amount():
    assert unit_cost(unit=UNIT_IMAGE, unit_price=40_000, count=0, group_ratio=Decimal(1)) == 1


@given(
    unit=st.sampled_from([UNIT_IMAGE, UNIT_CHARACTER, UNIT_SECOND]),
    unit_price=st.integers(min_value=1, max_value=10**9),
    count=st.integers(min_value=0, max_value=10**8),
    group_ratio=st.decimals(
        min_value=Decimal("0.000001"), max_value=Decimal(1000), places=6, allow_nan=False
    ),
)
@example(unit=UNIT_IMAGE, unit_price=10**9, count=10**8, group_ratio=Decimal(1000))
def test_unit_cost_is_the_exact_amount_rounded_up(unit, unit_price, count, group_ratio):
    basis = {UNIT_IMAGE: 1, UNIT_CHARACTER: 1_000_000, UNIT_SECOND: 60}[unit]
    exact_scaled = unit_price * count * int(group_ratio * 1_000_000)
    if exact_scaled > MAX_COST_MICRO * basis * 1_000_000:
        # More than a 64-bit amount of micro-USD: refused, never wrapped or truncated.
        with pytest.raises(OverflowError):
            unit_cost(unit=unit, unit_price=unit_price, count=count, group_ratio=group_ratio)
        return
    cost = unit_cost(unit=unit, unit_price=unit_price, count=count, group_ratio=group_ratio)
    # cost - 1 < exact ≤ cost, in integers: (cost - 1) × basis × 10^6 < price × count × ratio × 10^6
    assert exact_scaled <= cost * basis * 1_000_000
    assert cost == 1 or (cost - 1) * basis * 1_000_000 < exact_scaled


def test_refused_unit_costs():
    with pytest.raises(ValueError, match="Unknown unit"):
        unit_cost(unit="token", unit_price=1, count=1, group_ratio=Decimal(1))
    with pytest.raises(ValueError, match="negative"):
        unit_cost(unit=UNIT_IMAGE, unit_price=1, count=-1, group_ratio=Decimal(1))
    with pytest.raises(ValueError, match="greater than 0"):
        unit_cost(unit=UNIT_IMAGE, unit_price=1, count=1, group_ratio=Decimal(0))


def test_the_most_specific_image_price_applies():
    assert image_price(DALL_E_3, size="1024x1024", quality="standard") == 40_000
    assert image_price(DALL_E_3, size="1024x1792", quality="standard") == 80_000
    assert image_price(DALL_E_3, size="1024x1024", quality="hd") == 80_000
    assert image_price(DALL_E_3, size="1024x1792", quality="hd") == 120_000
    assert image_price(DALL_E_3, size=None, quality=None) == 40_000


@pytest.mark.parametrize(
    "table",
    [
        None,
        {},
        [40_000],
        {"1024x1024": 40_000},  # no "*"
        {"*": 0},
        {"*": -1},
        {"*": 1.5},
        {"*": True},
        {"*": "40000"},
        {"*": 10**13},
        {"*": 1, "huge!": 2},
        {"*": 1, "hd 1024x1024 extra": 2},
        {"*": 1, "\x00": 2},
        {"*": 1, **{f"{size}x{size}": 1 for size in range(40)}},
    ],
)
def test_a_bad_image_price_table_is_refused(table):
    assert image_price_table_problem(table) is not None


# --- The price-change service --------------------------------------------------------


def _record(target, admin, new_prices, reason="Vendor list prices"):
    return services.price_change_record(
        target=target,
        new_prices=new_prices,
        reason=reason,
        changed_by=admin,
        source=PriceChange.Source.FORM,
    )


@pytest.mark.django_db
def test_a_unit_price_changes_through_the_service_recorded_and_announced(catalog, admin_user):
    model = catalog["whisper-1"]

    change = _record(model, admin_user, {"price_per_minute": 5_000})

    model.refresh_from_db()
    assert model.price_per_minute == 5_000
    assert (change.old_price_per_minute, change.new_price_per_minute) == (6_000, 5_000)
    assert change.changed_by == admin_user
    lines = change_lines(change)
    assert [(line.label, line.old, line.new) for line in lines] == [
        ("Per minute", "$0.006", "$0.005")
    ]
    assert Announcement.objects.filter(category="price_adjustment").count() == 1


@pytest.mark.django_db
def test_an_image_table_change_is_recorded_old_and_new(catalog, admin_user):
    model = catalog["dall-e-3"]
    table = {**model.price_per_image, "hd": 90_000}

    change = _record(model, admin_user, {"price_per_image": table})

    model.refresh_from_db()
    assert model.price_per_image["hd"] == 90_000
    assert change.old_price_per_image["hd"] == 80_000
    assert change.new_price_per_image["hd"] == 90_000
    [line] = change_lines(change)
    assert line.label == "Per image"
    assert "hd: $0.08" in line.old
    assert "hd: $0.09" in line.new


@pytest.mark.django_db
def test_a_model_may_move_from_one_unit_to_another(catalog, admin_user):
    model = catalog["flux-1.1-pro"]

    change = _record(model, admin_user, {"price_per_call": None, "price_per_image": {"*": 50_000}})

    model.refresh_from_db()
    assert (model.price_per_call, model.price_per_image) == (None, {"*": 50_000})
    assert {line.label for line in change_lines(change)} == {"Per call", "Per image"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("new_prices", "message"),
    [
        ({"price_per_image": {"*": 40_000}}, "exactly one unit"),  # on top of per call
        ({"price_per_call": None}, "exactly one unit"),  # no unit at all
        ({"price_per_call": None, "price_per_image": {"1024x1024": 1}}, "must price"),
        ({"price_per_call": None, "price_per_image": {"*": 0}}, "micro-USD above 0"),
        ({"price_per_call": None, "price_per_minute": 0}, "micro-USD above 0"),
        ({"price_per_call": None, "price_per_million_characters": 1.5}, "micro-USD above 0"),
        ({"price_per_call": None, "price_per_minute": 10**13}, "micro-USD above 0"),
    ],
)
def test_refused_unit_prices_change_nothing(catalog, admin_user, new_prices, message):
    model = catalog["flux-1.1-pro"]
    before = {field: getattr(model, field) for field in CatalogModel.PRICE_FIELDS}

    with pytest.raises(services.PriceChangeError, match=message):
        _record(model, admin_user, new_prices)

    model.refresh_from_db()
    assert {field: getattr(model, field) for field in CatalogModel.PRICE_FIELDS} == before
    assert not PriceChange.objects.exists()


@pytest.mark.django_db
def test_the_database_refuses_a_model_priced_in_two_units(catalog):
    with pytest.raises(IntegrityError), transaction.atomic():
        CatalogModel.objects.filter(name="whisper-1").update(price_per_call=1)


@pytest.mark.django_db
def test_the_relay_price_carries_the_unit_prices(catalog):
    enterprise = PricingGroup.objects.get(name="enterprise")

    image = selectors.model_price(model_name="dall-e-3", pricing_group_id=enterprise.pk)
    speech = selectors.model_price(model_name="tts-1", pricing_group_id=None)
    transcription = selectors.model_price(model_name="whisper-1", pricing_group_id=None)

    assert image.price_per_image["hd 1024x1792"] == 120_000
    assert image.group_ratio == Decimal("0.9")
    assert speech.price_per_million_characters == 15_000_000
    assert transcription.price_per_minute == 6_000


@pytest.mark.django_db
def test_the_admin_form_changes_an_image_table_through_the_service(admin_client, catalog):
    model = catalog["dall-e-3"]
    url = reverse("admin:models_catalog_catalogmodel_change", args=[model.pk])
    page = admin_client.get(url)
    form = page.context["adminform"].form
    data = {
        name: ("" if value is None else value)
        for name, value in form.initial.items()
        if name in form.fields and name != "price_per_image"
    }
    data.update(
        vendor=model.vendor_id,
        price_per_image='{"*": 41000}',
        change_reason="Vendor list prices",
        **{
            "price_changes-TOTAL_FORMS": "0",
            "price_changes-INITIAL_FORMS": "0",
        },
    )
    data = {key: value for key, value in data.items() if value is not None}

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    model.refresh_from_db()
    assert model.price_per_image == {"*": 41_000}
    change = PriceChange.objects.get()
    assert change.reason == "Vendor list prices"
    assert change.new_price_per_image == {"*": 41_000}


@pytest.mark.django_db
def test_the_pricing_page_shows_each_unit(client, catalog):
    html = client.get(reverse("pricing")).content.decode()

    assert "$0.04 / image" in html
    assert "and 5 more sizes and qualities" in html  # dall-e-3: on its own page
    assert "$15.00 / 1M characters" in html
    assert "$0.006 / minute" in html


@pytest.mark.django_db
def test_the_model_page_shows_its_unit_prices_for_the_group(client, catalog):
    from tests.factories import UserFactory

    client.force_login(UserFactory(pricing_group=PricingGroup.objects.get(name="enterprise")))
    html = client.get(reverse("models_catalog:model_detail", args=["whisper-1"])).content.decode()

    assert "$0.0054 / minute" in html


@pytest.mark.django_db
def test_the_model_page_lists_every_image_price(client, catalog):
    html = client.get(reverse("models_catalog:model_detail", args=["dall-e-3"])).content.decode()

    assert "<code>hd 1024x1792</code>: $0.12 / image" in html
    assert "$0.04 / image" in html


# --- The log row's breakdown ---------------------------------------------------------


def _row(**fields) -> RequestLog:
    return RequestLog(status_code=200, group_ratio=Decimal("0.9"), **fields)


def test_an_image_row_breaks_down_to_its_charge():
    breakdown = cost_breakdown(_row(unit=UNIT_IMAGE, unit_count=3, unit_price=40_000, cost=108_000))
    assert breakdown.worked == "ceil(40,000 × 3 × 0.9) = ceil(108000) = 108,000 micro-USD"
    assert breakdown.computed == breakdown.charged == 108_000
    assert breakdown.note == ""


def test_a_speech_row_breaks_down_to_its_charge():
    breakdown = cost_breakdown(
        _row(unit=UNIT_CHARACTER, unit_count=11, unit_price=15_000_000, cost=149)
    )
    assert breakdown.worked == (
        "ceil(15,000,000 × 11 / 1,000,000 × 0.9) = ceil(148.5) = 149 micro-USD"
    )
    assert breakdown.computed == 149


def test_a_transcription_row_breaks_down_to_its_charge():
    breakdown = cost_breakdown(_row(unit=UNIT_SECOND, unit_count=61, unit_price=6_000, cost=5_490))
    assert breakdown.worked == "ceil(6,000 × 61 / 60 × 0.9) = ceil(5490) = 5,490 micro-USD"
    assert "seconds" in breakdown.formula


@pytest.mark.django_db
def test_the_admin_shows_each_groups_unit_prices(admin_client, catalog):
    model = catalog["dall-e-3"]

    form_page = admin_client.get(
        reverse("admin:models_catalog_catalogmodel_change", args=[model.pk])
    ).content.decode()
    list_page = admin_client.get(
        reverse("admin:models_catalog_catalogmodel_changelist")
    ).content.decode()

    # The enterprise line's ×0.9 on "hd 1024x1792" ($0.12): $0.108.
    assert "hd 1024x1792: $0.108 / image" in form_page
    assert "$15.00 / 1M characters" in list_page
    assert "$0.006 / minute" in list_page
