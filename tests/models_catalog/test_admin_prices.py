"""The catalog admin shows the prices its multipliers make, in the list and the forms."""

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from models_catalog.admin import price_preview_row
from models_catalog.display import price_preview_constants, price_text, prices_of
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
    dalle = re.search(r"<tr[^>]*>(?:(?!</tr>).)*>flux-1.1-pro</a>(?:(?!</tr>).)*</tr>", text, re.S)
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
        assert f'<td data-price="input">{price_text(expected.input_per_1m)}</td>' in row.group(1)
        assert f'<td data-price="output">{price_text(expected.output_per_1m)}</td>' in row.group(1)


def test_the_group_form_shows_what_models_cost_in_the_group(admin_client, catalog):
    group = PricingGroup.objects.exclude(group_ratio=1).first()
    assert group is not None

    page = admin_client.get(
        reverse("admin:models_catalog_pricinggroup_change", args=[group.pk])
    ).content.decode()

    first = CatalogModel.objects.filter(is_enabled=True, model_ratio__isnull=False).first()
    expected = price_text(int(2 * first.model_ratio * group.group_ratio * 1_000_000))
    assert f'<th scope="row">{first.name}</th><td data-price="input">{expected}</td>' in page
    assert f"What 10 of the {CatalogModel.objects.filter(is_enabled=True).count()}" in page
    listing = admin_client.get(reverse("admin:models_catalog_pricinggroup_changelist"))
    assert (
        f"{price_text(int(2 * group.group_ratio * 1_000_000))} / 1M input tokens"
        in listing.content.decode()
    )


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


def test_prices_are_micro_usd_rounded_half_to_even_and_read_exactly():
    tiny = prices_of(
        model_ratio=Decimal("0.000001"),
        completion_ratio=Decimal("0.5"),
        cached_ratio=Decimal("0.75"),
        price_per_call=None,
        group_ratio=Decimal("0.5"),
    )
    # Input 0.000001 * 0.5 * 2 = $0.000001; output half of it, cached three quarters.
    assert (tiny.input_per_1m, tiny.output_per_1m, tiny.cached_input_per_1m) == (1, 0, 1)
    assert price_text(tiny.input_per_1m) == "$0.000001"
    assert price_text(tiny.per_call) == "—"
    for price_per_call, micro in ((3, 2), (5, 2), (40_000, 20_000)):
        per_call = prices_of(
            model_ratio=None,
            completion_ratio=None,
            cached_ratio=None,
            price_per_call=price_per_call,
            group_ratio=Decimal("0.5"),
        )
        assert per_call.per_call == micro
    assert price_text(1_200_000_000) == "$1,200.00"
