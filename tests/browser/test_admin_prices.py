"""An admin types a multiplier and sees the prices it makes at once, as Python computes them."""

from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType

from models_catalog.demo_catalog import load_demo_catalog
from models_catalog.display import price_text, prices_of
from models_catalog.models import CatalogModel, PricingGroup
from tests.factories import StaffFactory

from .conftest import SIZES, look, resize, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# (model ratio, completion ratio, cached ratio): values whose prices round at the last
# decimal, so the script's rounding must be Python's.
TYPED = [
    ("1.5", "4", "0.5"),
    ("0.333333", "3.3", "0.125"),
    ("0.0000015", "1", ""),  # seven decimals: the form refuses it, the preview shows "—"
    ("0.000013", "7.777777", "0.1"),
]


@pytest.fixture(autouse=True)
def _fresh_content_types():
    ContentType.objects.clear_cache()


def row_prices(page, label: str) -> list[str]:
    row = page.locator("tr[data-price-row]").filter(has=page.get_by_role("rowheader", name=label))
    return [row.locator(f'td[data-price="{kind}"]').inner_text() for kind in PRICE_KINDS]


PRICE_KINDS = ["input", "output", "cached", "per-call"]


def expected_prices(model_ratio, completion_ratio, cached_ratio, group_ratio) -> list[str]:
    if len(model_ratio.partition(".")[2]) > 6:
        return ["—", "—", "—", "—"]
    prices = prices_of(
        model_ratio=Decimal(model_ratio),
        completion_ratio=Decimal(completion_ratio),
        cached_ratio=Decimal(cached_ratio) if cached_ratio else None,
        price_per_call=None,
        group_ratio=group_ratio,
    )
    return [
        price_text(prices.input_per_1m),
        price_text(prices.output_per_1m),
        price_text(prices.cached_input_per_1m),
        price_text(prices.per_call),
    ]


def test_the_model_form_shows_each_groups_prices_as_a_ratio_is_typed(page):
    load_demo_catalog()
    model = CatalogModel.objects.get(name="gpt-4o")
    groups = list(PricingGroup.objects.order_by("-is_default", "name"))
    sign_in(page, StaffFactory())

    for size in SIZES:
        resize(page, size)
        page.goto(f"/admin/models_catalog/catalogmodel/{model.pk}/change/")
        default = groups[0]
        label = f"{default} (x{default.group_ratio.normalize()})"
        # As rendered by Python, then recomputed by the script on load: the same.
        assert row_prices(page, label) == ["$2.50", "$10.00", "$1.25", "—"]

        for model_ratio, completion_ratio, cached_ratio in TYPED:
            page.locator("#id_model_ratio").fill(model_ratio)
            page.locator("#id_completion_ratio").fill(completion_ratio)
            page.locator("#id_cached_ratio").fill(cached_ratio)
            for group in groups:
                label = f"{group} (x{group.group_ratio.normalize()})"
                assert row_prices(page, label) == expected_prices(
                    model_ratio, completion_ratio, cached_ratio, group.group_ratio
                ), (model_ratio, group.name)

        page.locator("#id_model_ratio").fill("1.5")
        page.locator("#id_completion_ratio").fill("4")
        page.locator("#id_cached_ratio").fill("0.5")
        assert row_prices(page, f"{default} (x{default.group_ratio.normalize()})")[0] == "$3.00"
        page.locator("#id_change_reason").fill("OpenAI raised prices")
        page.locator(".comet-price-preview").scroll_into_view_if_needed()
        look(page, f"admin-model-prices-{size}")

        page.goto("/admin/models_catalog/catalogmodel/?q=gpt-4o")
        row = page.locator("#result_list tbody tr").filter(has_text="gpt-4o-mini")
        assert row.locator("td.field-input_price").inner_text() == "$0.15"
        assert row.locator("td.field-output_price").inner_text() == "$0.60"
        look(page, f"admin-model-list-{size}")


def test_a_per_call_price_and_a_group_ratio_are_previewed_too(page):
    load_demo_catalog()
    group = PricingGroup.objects.exclude(is_default=True).order_by("name").first()
    image = CatalogModel.objects.get(name="flux-1.1-pro")
    sign_in(page, StaffFactory())

    for size in SIZES:
        resize(page, size)
        page.goto(f"/admin/models_catalog/catalogmodel/{image.pk}/change/")
        page.locator("#id_price_per_call").fill("123457")
        label = f"{group} (x{group.group_ratio.normalize()})"
        expected = prices_of(
            model_ratio=None,
            completion_ratio=None,
            cached_ratio=None,
            price_per_call=123457,
            group_ratio=group.group_ratio,
        )
        assert row_prices(page, label) == ["—", "—", "—", price_text(expected.per_call)]

        page.goto(f"/admin/models_catalog/pricinggroup/{group.pk}/change/")
        first = CatalogModel.objects.filter(is_enabled=True, model_ratio__isnull=False).first()
        for ratio in ["0.77", "1.333333", "2"]:
            page.locator("#id_group_ratio").fill(ratio)
            assert row_prices(page, first.name) == expected_prices(
                f"{first.model_ratio:f}",
                f"{first.completion_ratio:f}",
                f"{first.cached_ratio:f}" if first.cached_ratio else "",
                Decimal(ratio),
            )
        page.locator(".comet-price-preview").scroll_into_view_if_needed()
        look(page, f"admin-group-prices-{size}")
