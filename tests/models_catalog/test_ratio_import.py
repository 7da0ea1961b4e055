import json
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from announcements.models import Announcement
from models_catalog.models import CatalogModel, PriceChange, PricingGroup
from models_catalog.ratio_import import ratio_export

pytestmark = pytest.mark.django_db

IMPORT_URL = reverse("admin:models_catalog_ratio_import")


def upload(client, payload):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(
        IMPORT_URL, {"ratio_file": SimpleUploadedFile("ratios.json", raw, "application/json")}
    )


def prices():
    models = {
        m.name: (m.model_ratio, m.completion_ratio, m.price_per_call)
        for m in CatalogModel.objects.all()
    }
    return {**models, **{g.name: g.group_ratio for g in PricingGroup.objects.all()}}


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_preview_shows_every_change_in_dollars_per_million_and_changes_nothing(
    admin_client, catalog
):
    before = prices()

    response = upload(
        admin_client,
        {
            "ModelRatio": {"gpt-4o": 1.5, "o3": 1},  # o3 unchanged
            "CompletionRatio": '{"gpt-4o-mini": 5}',  # one-api stores maps as strings
            "ModelPrice": {"flux-1.1-pro": 0.05},
            "GroupRatio": {"enterprise": 0.8},
        },
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "Preview: 4 changes" in html
    assert "$2.50</td><td>$3.00" in html  # gpt-4o input
    assert "$0.60</td><td>$0.75" in html  # gpt-4o-mini output
    assert "$0.04</td><td>$0.05" in html  # flux-1.1-pro per call
    assert "x0.9</td><td>x0.8" in html
    assert "<td>o3</td>" not in html
    assert prices() == before
    assert not PriceChange.objects.exists()


def test_applying_records_each_change_like_any_other(admin_client, admin_user, catalog):
    raw = json.dumps({"ModelRatio": {"gpt-4o": "1.5"}, "GroupRatio": {"enterprise": 0.8}})

    response = admin_client.post(
        IMPORT_URL, {"raw": raw, "change_reason": "Sync with upstream", "apply": "1"}
    )

    assert response.status_code == 302
    assert CatalogModel.objects.get(name="gpt-4o").model_ratio == Decimal("1.5")
    assert PricingGroup.objects.get(name="enterprise").group_ratio == Decimal("0.8")
    changes = PriceChange.objects.all()
    assert {change.source for change in changes} == {PriceChange.Source.IMPORT}
    assert {change.reason for change in changes} == {"Sync with upstream"}
    assert {change.changed_by for change in changes} == {admin_user}
    assert Announcement.objects.filter(category="price_adjustment").count() == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "not valid JSON"),
        ([1, 2], "Expected a JSON object"),
        ({"ModelRatios": {"gpt-4o": 1}}, "Unknown map(s): ModelRatios"),
        ({"ModelRatio": {"gpt-4o": 0}}, "must be above 0"),
        ({"ModelRatio": {"gpt-4o": -2}}, "must be above 0"),
        ({"ModelRatio": {"gpt-4o": "cheap"}}, "is not a number"),
        ({"ModelRatio": {"gpt-4o": 1.5, "gpt-17": 1}}, "Unknown model(s): gpt-17"),
        ({"GroupRatio": {"platinum": 1}}, "Unknown group(s): platinum"),
        ({"ModelRatio": {"flux-1.1-pro": 1}}, "priced in exactly one unit"),
        ({"ModelRatio": {"gpt-4o": 1.1234567}}, "at most 6 decimals"),
        # Each of these answered 500: PostgreSQL refuses NUL, psycopg a lone surrogate,
        # and json.loads raises RecursionError.
        ({"ModelRatio": {"gpt-4o\x00": 1}}, "ModelRatio: a name contains a NUL character"),
        ({"ModelRatio": {"\ud800": 1}}, "ModelRatio: a name contains a lone surrogate"),
        ({"GroupRatio": {"\x00": 1}}, "GroupRatio: a name contains a NUL character"),
        (b"[" * 100_000, "nested too deeply"),
        ({"ModelRatio": "[" * 100_000}, "ModelRatio is not a JSON object"),
        (b'{"ModelRatio": {"gpt-4o": 1e309}}', "gpt-4o"),
    ],
)
def test_a_bad_file_is_refused_with_a_clear_error_and_nothing_changes(
    admin_client, catalog, payload, message
):
    before = prices()

    for response in [
        upload(admin_client, payload),
        admin_client.post(
            IMPORT_URL,
            {
                "raw": payload.decode() if isinstance(payload, bytes) else json.dumps(payload),
                "change_reason": "x",
                "apply": "1",
            },
        ),
    ]:
        assert response.status_code == 200
        assert message in response.content.decode()
        assert "Preview:" not in response.content.decode()

    assert prices() == before
    assert not PriceChange.objects.exists()
    assert not Announcement.objects.exists()


def test_applying_with_a_nul_in_the_reason_is_refused(admin_client, catalog):
    response = admin_client.post(
        IMPORT_URL,
        {"raw": json.dumps({"ModelRatio": {"gpt-4o": 2}}), "change_reason": "a\x00b", "apply": "1"},
    )

    assert response.status_code == 200
    assert "The reason contains a NUL character" in response.content.decode()
    assert CatalogModel.objects.get(name="gpt-4o").model_ratio == Decimal("1.25")
    assert not PriceChange.objects.exists()


def test_applying_without_a_reason_is_refused(admin_client, catalog):
    response = admin_client.post(
        IMPORT_URL, {"raw": json.dumps({"ModelRatio": {"gpt-4o": 2}}), "apply": "1"}
    )

    assert "Give a reason" in response.content.decode()
    assert CatalogModel.objects.get(name="gpt-4o").model_ratio == Decimal("1.25")


def test_export_is_one_api_json_that_imports_back_unchanged(admin_client, catalog):
    response = admin_client.get(reverse("admin:models_catalog_ratio_export"))

    exported = json.loads(response.content)
    assert exported["ModelRatio"]["gpt-4o"] == 1.25
    assert exported["CompletionRatio"]["gpt-4o"] == 4
    assert exported["ModelPrice"]["flux-1.1-pro"] == 0.04
    assert exported["GroupRatio"]["default"] == 1
    preview = upload(admin_client, exported)
    assert "nothing to change" in preview.content.decode()
    assert ratio_export() == exported


def test_import_needs_the_change_prices_permission(client, catalog):
    from django.contrib.auth.models import Permission

    from tests.factories import UserFactory

    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_catalogmodel"))
    client.force_login(staff)

    response = upload(client, {"ModelRatio": {"gpt-4o": 9}})

    assert response.status_code == 403
    assert CatalogModel.objects.get(name="gpt-4o").model_ratio == Decimal("1.25")
