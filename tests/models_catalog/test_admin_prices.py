"""The catalog admin shows the prices its multipliers make, in the list and the forms."""

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from models_catalog.admin import price_preview_row
from models_catalog.display import price, price_preview_constants, prices_of
from models_catalog.models import CatalogModel, PriceChange, PricingGroup
from models_catalog.pricing import MICRO_USD_PER_TOKEN_AT_RATIO_ONE

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_the_model_list_shows_prices_beside_the_multipliers(admin_client, catalog):
    page = admin_client.get(reverse("admin:models_catalog_catalogmodel_changelist")).content
    text = page.decode()

    for heading in ["Input / 1M", "Output / 1M", "Cached input / 1M", "Price per call"]:
        assert heading in text
    row = re.search(r"<tr[^>]*>(?:(?!</tr>).)*>gpt-4o</a>(?:(?!</tr>).)*</tr>", text, re.S)
    assert row is not None
    # gpt-4o: ratio 1.25, completion 4, cached 0.5 → $2.50 in, $10 out, $1.25 cached.
    cells = re.findall(r'class="field-(\w+)[^"]*">([^<]*)<', row.group(0))
    prices = dict(cells)
    assert prices["input_price"] == "$2.50"
    assert prices["output_price"] == "$10.00"
    assert prices["cached_input_price"] == "$1.25"
    assert prices["per_call_price"] == "—"
    dalle = re.search(r"<tr[^>]*>(?:(?!</tr>).)*>dall-e-3</a>(?:(?!</tr>).)*</tr>", text, re.S)
    assert 'class="field-per_call_price">$0.04<' in dalle.group(0)


def test_the_model_form_shows_each_groups_prices_with_the_constants_for_the_script(
    admin_client, catalog
):
    model = catalog["gpt-4o"]
    groups = list(PricingGroup.objects.order_by("-is_default", "name"))
    assert len(groups) > 1

    page = admin_client.get(
        reverse("admin:models_catalog_catalogmodel_change", args=[model.pk])
    ).content.decode()

    assert 'src="/static/js/admin-prices.js"' in page
    assert f'data-micro-usd-per-token-at-ratio-one="{MICRO_USD_PER_TOKEN_AT_RATIO_ONE}"' in page
    assert f'data-micro-usd-per-usd="{price_preview_constants()["micro_usd_per_usd"]}"' in page
    for group in groups:
        expected = prices_of(
            model_ratio=model.model_ratio,
            completion_ratio=model.completion_ratio,
            cached_ratio=model.cached_ratio,
            price_per_call=None,
            group_ratio=group.group_ratio,
        )
        row = re.search(
            rf'<tr data-price-row[^>]*data-group-ratio="{group.group_ratio:f}">'
            rf"<th scope=\"row\">{re.escape(str(group))} \(x[^)]*\)</th>(.*?)</tr>",
            page,
        )
        assert row is not None, group
        assert f'<td data-price="input">{price(expected.input_per_1m)}</td>' in row.group(1)
        assert f'<td data-price="output">{price(expected.output_per_1m)}</td>' in row.group(1)


def test_the_group_form_shows_what_models_cost_in_the_group(admin_client, catalog):
    group = PricingGroup.objects.exclude(group_ratio=1).first()
    assert group is not None

    page = admin_client.get(
        reverse("admin:models_catalog_pricinggroup_change", args=[group.pk])
    ).content.decode()

    first = CatalogModel.objects.filter(is_enabled=True, model_ratio__isnull=False).first()
    expected = price(2 * first.model_ratio * group.group_ratio)
    assert f'<th scope="row">{first.name}</th><td data-price="input">{expected}</td>' in page
    assert f"What 10 of the {CatalogModel.objects.filter(is_enabled=True).count()}" in page
    listing = admin_client.get(reverse("admin:models_catalog_pricinggroup_changelist"))
    assert f"{price(2 * group.group_ratio)} / 1M input tokens" in listing.content.decode()


def test_a_price_edited_in_the_form_still_goes_through_the_service(admin_client, catalog):
    from tests.models_catalog.test_admin import change_form_data, change_url

    model = catalog["gpt-4o"]
    response = admin_client.post(
        change_url(model), change_form_data(model, model_ratio="1.5", change_reason="Raised")
    )

    assert response.status_code == 302
    change = PriceChange.objects.get()
    assert (change.new_model_ratio, change.reason) == (Decimal("1.5"), "Raised")


def test_a_preview_row_says_what_its_multipliers_are_and_make():
    row = price_preview_row(
        "Pro",
        model_ratio=Decimal("0.075"),
        completion_ratio=Decimal("4"),
        cached_ratio=None,
        price_per_call=None,
        group_ratio=Decimal("0.8"),
    )

    assert row["model_ratio"] == "0.075"
    assert row["cached_ratio"] == ""
    assert (row["input"], row["output"], row["cached"], row["per_call"]) == (
        "$0.12",
        "$0.48",
        "—",
        "—",
    )
