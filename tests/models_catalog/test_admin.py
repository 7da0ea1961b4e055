from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from announcements.models import Announcement
from models_catalog.models import CatalogModel, PriceChange, PricingGroup
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def change_form_data(model, **overrides):
    data = {
        "vendor": model.vendor_id,
        "kind": model.kind,
        "context_window": model.context_window or "",
        "description": model.description,
        "is_enabled": "on" if model.is_enabled else "",
        "model_ratio": model.model_ratio if model.model_ratio is not None else "",
        "completion_ratio": model.completion_ratio,
        "cached_ratio": model.cached_ratio if model.cached_ratio is not None else "",
        "price_per_call": model.price_per_call or "",
        "change_reason": "",
        "effective_at_0": "",
        "effective_at_1": "",
        "price_changes-TOTAL_FORMS": "0",
        "price_changes-INITIAL_FORMS": "0",
        "price_changes-MIN_NUM_FORMS": "0",
        "price_changes-MAX_NUM_FORMS": "0",
    }
    data.update(overrides)
    return data


def change_url(model):
    return reverse("admin:models_catalog_catalogmodel_change", args=[model.pk])


def test_change_form_edit_records_history_with_the_reason(admin_client, admin_user, catalog):
    model = catalog["gpt-4o"]

    response = admin_client.post(
        change_url(model),
        change_form_data(model, model_ratio="1.5", change_reason="OpenAI raised prices"),
    )

    assert response.status_code == 302
    model.refresh_from_db()
    assert model.model_ratio == Decimal("1.5")
    change = PriceChange.objects.get()
    assert (change.old_model_ratio, change.new_model_ratio) == (Decimal("1.25"), Decimal("1.5"))
    assert change.reason == "OpenAI raised prices"
    assert change.changed_by == admin_user
    assert change.source == PriceChange.Source.FORM
    page = admin_client.get(change_url(model)).content.decode()
    assert "OpenAI raised prices" in page
    assert "$2.50 → $3.00" in page


def test_change_form_without_a_reason_is_refused_and_changes_nothing(admin_client, catalog):
    model = catalog["gpt-4o"]

    response = admin_client.post(change_url(model), change_form_data(model, model_ratio="1.5"))

    assert response.status_code == 200
    assert "Give a reason for the price change" in response.content.decode()
    model.refresh_from_db()
    assert model.model_ratio == Decimal("1.25")
    assert not PriceChange.objects.exists()


def test_change_form_refuses_a_zero_ratio(admin_client, catalog):
    model = catalog["gpt-4o"]

    response = admin_client.post(
        change_url(model), change_form_data(model, model_ratio="0", change_reason="x")
    )

    assert response.status_code == 200
    assert "above 0" in response.content.decode()
    assert CatalogModel.objects.get(pk=model.pk).model_ratio == Decimal("1.25")


def test_editing_only_the_description_needs_no_reason_and_records_no_price_change(
    admin_client, catalog
):
    model = catalog["gpt-4o"]

    response = admin_client.post(
        change_url(model), change_form_data(model, description="Flagship multimodal model")
    )

    assert response.status_code == 302
    assert CatalogModel.objects.get(pk=model.pk).description == "Flagship multimodal model"
    assert not PriceChange.objects.exists()


def list_edit(client, model, reason, **prices):
    row = {
        "model_ratio": model.model_ratio,
        "completion_ratio": model.completion_ratio,
        "cached_ratio": model.cached_ratio if model.cached_ratio is not None else "",
        "price_per_call": model.price_per_call or "",
        **prices,
    }
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "form-0-id": model.pk,
        **{f"form-0-{key}": value for key, value in row.items()},
        "change_reason": reason,
        "_save": "Save",
    }
    url = reverse("admin:models_catalog_catalogmodel_changelist") + f"?q={model.name}"
    return client.post(url, data)


def test_list_edit_goes_through_the_same_service(admin_client, admin_user, catalog):
    model = catalog["gpt-4o-mini"]

    response = list_edit(admin_client, model, "Cheaper output", completion_ratio="3")

    assert response.status_code == 302
    change = PriceChange.objects.get()
    assert change.source == PriceChange.Source.LIST
    assert change.reason == "Cheaper output"
    assert (change.old_completion_ratio, change.new_completion_ratio) == (Decimal(4), Decimal(3))
    assert CatalogModel.objects.get(pk=model.pk).completion_ratio == Decimal(3)
    assert Announcement.objects.filter(category="price_adjustment").count() == 1


def test_list_edit_without_a_reason_is_refused(admin_client, catalog):
    model = catalog["gpt-4o-mini"]

    response = list_edit(admin_client, model, "", completion_ratio="3")

    assert response.status_code == 200
    assert "Give a reason for the price change" in response.content.decode()
    assert CatalogModel.objects.get(pk=model.pk).completion_ratio == Decimal(4)
    assert not PriceChange.objects.exists()


def test_list_edit_with_a_nul_in_the_reason_is_refused(admin_client, catalog):
    model = catalog["gpt-4o-mini"]

    response = list_edit(admin_client, model, "cheaper\x00", completion_ratio="3")

    assert response.status_code == 200
    assert "The reason contains a NUL character" in response.content.decode()
    assert CatalogModel.objects.get(pk=model.pk).completion_ratio == Decimal(4)
    assert not PriceChange.objects.exists()


def test_change_form_with_a_nul_in_the_reason_is_refused(admin_client, catalog):
    model = catalog["gpt-4o-mini"]

    response = admin_client.post(
        change_url(model), change_form_data(model, model_ratio="1.5", change_reason="x\x00")
    )

    assert response.status_code == 200
    assert "Null characters are not allowed" in response.content.decode()
    assert not PriceChange.objects.exists()


def test_group_ratio_list_edit(admin_client, catalog):
    group = PricingGroup.objects.get(name="enterprise")
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "form-0-id": group.pk,
        "form-0-group_ratio": "0.8",
        "change_reason": "New contract terms",
        "_save": "Save",
    }

    response = admin_client.post(reverse("admin:models_catalog_pricinggroup_changelist"), data)

    assert response.status_code == 302
    group.refresh_from_db()
    assert group.group_ratio == Decimal("0.8")
    assert PriceChange.objects.get().pricing_group == group


def test_staff_without_the_price_permission_cannot_edit_prices(client, catalog):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_catalogmodel", "change_catalogmodel"])
    )
    client.force_login(staff)
    model = catalog["gpt-4o"]

    listing = client.get(reverse("admin:models_catalog_catalogmodel_changelist"))
    assert 'name="form-0-model_ratio"' not in listing.content.decode()
    client.post(change_url(model), change_form_data(model, model_ratio="9", change_reason="sneaky"))
    list_edit(client, model, "sneaky", model_ratio="9")

    assert CatalogModel.objects.get(pk=model.pk).model_ratio == Decimal("1.25")
    assert not PriceChange.objects.exists()


def admin_zone() -> ZoneInfo:
    return ZoneInfo(settings.PLATFORM_TIME_ZONE)


def test_change_form_can_schedule_a_change_for_later(admin_client, catalog):
    model = catalog["gpt-4o"]
    # Typed in the admin's zone (none chosen: the platform's).
    at = timezone.localtime(timezone.now() + timedelta(hours=2), admin_zone())

    response = admin_client.post(
        change_url(model),
        change_form_data(
            model,
            model_ratio="2",
            change_reason="Announced increase",
            effective_at_0=at.strftime("%Y-%m-%d"),
            effective_at_1=at.strftime("%H:%M:%S"),
        ),
    )

    assert response.status_code == 302
    change = PriceChange.objects.get()
    assert change.status == PriceChange.Status.SCHEDULED
    assert CatalogModel.objects.get(pk=model.pk).model_ratio == Decimal("1.25")


def test_change_form_refuses_a_schedule_inside_the_email_window(admin_client, catalog):
    model = catalog["gpt-4o"]
    soon = timezone.localtime(timezone.now() + timedelta(minutes=3), admin_zone())

    response = admin_client.post(
        change_url(model),
        change_form_data(
            model,
            model_ratio="2",
            change_reason="Too soon",
            effective_at_0=soon.strftime("%Y-%m-%d"),
            effective_at_1=soon.strftime("%H:%M:%S"),
        ),
    )

    assert response.status_code == 200
    assert "at least 10 minutes ahead" in response.content.decode()
    assert not PriceChange.objects.exists()


def test_model_admin_page_query_count(
    admin_client, catalog, admin_user, django_assert_max_num_queries
):
    from models_catalog.services import price_change_record

    model = catalog["gpt-4o"]
    for ratio in ["1.3", "1.4", "1.5"]:
        price_change_record(
            target=model,
            new_prices={"model_ratio": Decimal(ratio)},
            reason=f"to {ratio}",
            changed_by=admin_user,
            source=PriceChange.Source.FORM,
        )

    with django_assert_max_num_queries(20):
        page = admin_client.get(change_url(model))

    assert page.content.decode().count("to 1.") >= 3


def test_changelist_offers_the_reason_box_and_import_export(
    admin_client, catalog, django_assert_max_num_queries
):
    with django_assert_max_num_queries(15):
        response = admin_client.get(reverse("admin:models_catalog_catalogmodel_changelist"))

    html = response.content.decode()
    assert 'name="change_reason"' in html
    assert 'name="form-0-model_ratio"' in html
    assert reverse("admin:models_catalog_ratio_import") in html
    assert reverse("admin:models_catalog_ratio_export") in html
    assert admin_client.get(reverse("admin:models_catalog_ratio_import")).status_code == 200
