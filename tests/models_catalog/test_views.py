import json
from decimal import Decimal

import pytest
from django.urls import reverse

from models_catalog.models import CatalogModel, PriceChange, PricingGroup
from models_catalog.services import price_change_record
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_anonymous_visitor_sees_every_enabled_model_at_default_prices(
    client, catalog, django_assert_max_num_queries
):
    CatalogModel.objects.filter(name="o1").update(is_enabled=False)

    with django_assert_max_num_queries(6):
        response = client.get(reverse("pricing"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "<code>gpt-4o</code>" in html
    assert "$2.5" in html
    assert "$10" in html
    assert "<code>o1</code>" not in html
    assert "$0.04" in html  # dall-e-3 per call
    assert "Model ratio" not in html  # raw multipliers are opt-in


def test_search_and_filters_answer_htmx_with_the_table_fragment_only(client, catalog):
    response = client.get(
        reverse("pricing"), {"q": "claude", "kind": "chat", "raw": "on"}, HTTP_HX_REQUEST="true"
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert 'id="pricing-table"' in html
    assert "claude-opus-4-20250514" in html
    assert "gpt-4o" not in html
    assert "Model ratio" in html


def test_vendor_filter(client, catalog):
    html = client.get(reverse("pricing"), {"vendor": "deepseek"}).content.decode()

    assert "deepseek-chat" in html
    assert "gpt-4o-mini" not in html


def test_signed_in_user_sees_their_group_prices(client, catalog):
    user = UserFactory(pricing_group=PricingGroup.objects.get(name="enterprise"))
    client.force_login(user)

    html = client.get(reverse("pricing"), {"q": "gpt-4o-mini"}).content.decode()

    # 0.075 * 2 * 0.9 = $0.135 per 1M input tokens
    assert "$0.135" in html


def test_model_page_shows_price_history_with_reason(client, catalog, admin_user):
    price_change_record(
        target=catalog["gpt-4o"],
        new_prices={"model_ratio": Decimal("1.5")},
        reason="Vendor raised prices",
        changed_by=admin_user,
        source=PriceChange.Source.FORM,
    )

    response = client.get(reverse("models_catalog:model_detail", args=["gpt-4o"]))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Vendor raised prices" in html
    assert "$2.50 → $3.00" in html
    assert client.get(reverse("models_catalog:model_detail", args=["no-such"])).status_code == 404


def test_pricing_api_lists_models_with_the_documented_fields(client, catalog):
    response = client.get("/api/v1/pricing")

    assert response.status_code == 200
    entries = {entry["model"]: entry for entry in response.json()}
    assert set(entries["gpt-4o"]) >= {
        "model", "vendor", "kind", "group", "group_ratio", "model_ratio", "completion_ratio",
        "input_per_1m", "output_per_1m", "per_call",
    }  # fmt: skip
    assert entries["gpt-4o"]["input_per_1m"] == 2.5
    assert entries["gpt-4o"]["output_per_1m"] == 10.0
    assert entries["gpt-4o"]["per_call"] is None
    assert entries["gpt-4o"]["group"] == "default"
    assert entries["flux-1.1-pro"]["per_call"] == 0.04
    assert entries["flux-1.1-pro"]["input_per_1m"] is None
    assert entries["flux-1.1-pro"]["model_ratio"] is None
    # Prices per unit: per image by size and quality, per 1M characters, per minute.
    assert entries["dall-e-3"]["per_call"] is None
    assert entries["dall-e-3"]["per_image"]["*"] == 0.04
    assert entries["dall-e-3"]["per_image"]["hd 1024x1792"] == 0.12
    assert entries["tts-1"]["per_1m_characters"] == 15.0
    assert entries["whisper-1"]["per_minute"] == 0.006
    assert entries["gpt-4o"]["per_image"] is None


def test_pricing_api_is_in_the_openapi_schema(client):
    response = client.get(reverse("api-schema"), {"format": "json"})

    schema = json.loads(response.content)
    assert "/api/v1/pricing" in schema["paths"]
    assert "PricingEntry" in schema["components"]["schemas"]


def test_model_page_query_count_does_not_grow_with_history(
    client, catalog, admin_user, django_assert_max_num_queries
):
    for ratio in ["1.3", "1.4", "1.5", "1.6"]:
        price_change_record(
            target=catalog["gpt-4o"],
            new_prices={"model_ratio": Decimal(ratio)},
            reason=f"Step to {ratio}",
            changed_by=admin_user,
            source=PriceChange.Source.FORM,
        )

    with django_assert_max_num_queries(4):
        response = client.get(reverse("models_catalog:model_detail", args=["gpt-4o"]))

    assert response.content.decode().count("Step to") == 4


def test_pricing_api_filters_and_refuses_unknown_filters(client, catalog):
    entries = client.get("/api/v1/pricing", {"vendor": "anthropic", "kind": "chat"}).json()
    assert {entry["vendor"] for entry in entries} == {"anthropic"}
    assert len(entries) == 4

    response = client.get("/api/v1/pricing", {"kind": "hologram"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "kind"
    assert "Unknown kind" in response.json()["error"]["message"]
    response = client.get("/api/v1/pricing", {"vendor": "acme"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "vendor"


def test_pricing_api_prices_a_signed_in_user_by_their_group(client, catalog):
    client.force_login(UserFactory(pricing_group=PricingGroup.objects.get(name="enterprise")))

    entries = {entry["model"]: entry for entry in client.get("/api/v1/pricing").json()}

    assert entries["gpt-4o"]["group"] == "enterprise"
    assert entries["gpt-4o"]["group_ratio"] == 0.9
    assert entries["gpt-4o"]["input_per_1m"] == 2.25
    assert entries["flux-1.1-pro"]["per_call"] == 0.036
    # Prices per unit take the group's multiplier too.
    assert entries["dall-e-3"]["per_image"] == {
        "*": 0.036, "1024x1792": 0.072, "1792x1024": 0.072,
        "hd": 0.072, "hd 1024x1792": 0.108, "hd 1792x1024": 0.108,
    }  # fmt: skip
    assert entries["tts-1"]["per_1m_characters"] == 13.5
    assert entries["whisper-1"]["per_minute"] == 0.0054
