"""An admin's edits of a line (a pricing group: its models, default limits and names) are
in the audit log; its ratio is in the price history; an account's own limits are audited
by `accounts.services.user_line_set` (tests/accounts/test_line_grant.py)."""

from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from models_catalog.models import CatalogModel, PriceChange, PricingGroup

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def group_form(group: PricingGroup, **overrides):
    data = {
        "name": group.name,
        "display_name": group.display_name,
        "description": group.description,
        "group_ratio": group.group_ratio,
        "change_reason": "",
        "effective_at_0": "",
        "effective_at_1": "",
        "allows_all_models": "on" if group.allows_all_models else "",
        "catalog_models": [str(model.pk) for model in group.catalog_models.all()],
        "concurrency_limit": group.concurrency_limit,
        "rpm_limit": group.rpm_limit or "",
        "tpm_limit": group.tpm_limit or "",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def line_events():
    return list(
        AuditEvent.objects.filter(
            action__in=[AuditEvent.Action.LINE_CHANGED, AuditEvent.Action.LINE_CREATED]
        )
    )


def test_an_edit_of_a_lines_models_and_limits_is_audited(admin_client, admin_user, catalog):
    # Given the enterprise line, allowing every model
    line = PricingGroup.objects.get(name="enterprise")
    old_tpm = line.tpm_limit
    chosen = [catalog["gpt-4o"], catalog["gpt-4o-mini"]]

    # When an admin restricts it to two models and sets its TPM and RPM
    response = admin_client.post(
        reverse("admin:models_catalog_pricinggroup_change", args=[line.pk]),
        group_form(
            line,
            allows_all_models="",
            catalog_models=[str(model.pk) for model in chosen],
            tpm_limit="30000000",
            rpm_limit="6000",
        ),
    )

    # Then the line is saved, with one audit row naming each change, by whom
    assert response.status_code == 302, response.content.decode()[:3000]
    line.refresh_from_db()
    assert (line.allows_all_models, line.tpm_limit, line.rpm_limit) == (False, 30_000_000, 6000)
    [event] = line_events()
    assert event.action == AuditEvent.Action.LINE_CHANGED
    assert (event.actor, event.user_id) == (admin_user, None)
    assert (event.target_type, event.target_id, event.target_label) == (
        "models_catalog.pricinggroup",
        line.pk,
        "enterprise",
    )
    changed = {
        "allows_all_models": [True, False],
        "catalog_models": [[], ["gpt-4o", "gpt-4o-mini"]],
    }
    if old_tpm != 30_000_000:
        changed["tpm_limit"] = [old_tpm, 30_000_000]
    changed["rpm_limit"] = [None, 6000]
    assert event.detail == {"changed": changed}

    # And saving it again unchanged writes no row
    admin_client.post(
        reverse("admin:models_catalog_pricinggroup_change", args=[line.pk]), group_form(line)
    )
    assert len(line_events()) == 1

    # And removing one model is audited as the list before and after
    admin_client.post(
        reverse("admin:models_catalog_pricinggroup_change", args=[line.pk]),
        group_form(line, catalog_models=[str(catalog["gpt-4o"].pk)]),
    )
    latest = line_events()[0]
    assert latest.detail == {"changed": {"catalog_models": [["gpt-4o", "gpt-4o-mini"], ["gpt-4o"]]}}


def test_a_ratio_edit_is_in_the_price_history_not_the_line_audit(admin_client, admin_user, catalog):
    line = PricingGroup.objects.get(name="enterprise")

    response = admin_client.post(
        reverse("admin:models_catalog_pricinggroup_change", args=[line.pk]),
        group_form(line, group_ratio="0.8", change_reason="New contract", concurrency_limit="500"),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    change = PriceChange.objects.get()
    assert (change.new_group_ratio, change.changed_by, change.reason) == (
        Decimal("0.8"),
        admin_user,
        "New contract",
    )
    [event] = line_events()
    assert event.detail == {"changed": {"concurrency_limit": [100, 500]}}


def test_a_new_line_is_audited_with_its_models_and_limits(admin_client, admin_user, catalog):
    model = catalog["gpt-4o"]

    response = admin_client.post(
        reverse("admin:models_catalog_pricinggroup_add"),
        {
            "name": "training",
            "display_name": "Training line",
            "description": "",
            "group_ratio": "1",
            "catalog_models": [str(model.pk)],
            "concurrency_limit": "200",
            "rpm_limit": "",
            "tpm_limit": "1000000",
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    line = PricingGroup.objects.get(name="training")
    [event] = line_events()
    assert (event.action, event.actor, event.target_id) == (
        AuditEvent.Action.LINE_CREATED,
        admin_user,
        line.pk,
    )
    assert event.detail == {
        "changed": {
            "name": [None, "training"],
            "display_name": [None, "Training line"],
            "description": [None, ""],
            "allows_all_models": [None, False],
            "catalog_models": [None, ["gpt-4o"]],
            "concurrency_limit": [None, 200],
            "rpm_limit": [None, None],
            "tpm_limit": [None, 1_000_000],
        }
    }
    assert CatalogModel.objects.filter(lines=line).count() == 1


def test_an_invalid_edit_writes_no_audit_row(admin_client, catalog):
    line = PricingGroup.objects.get(name="enterprise")

    response = admin_client.post(
        reverse("admin:models_catalog_pricinggroup_change", args=[line.pk]),
        group_form(line, concurrency_limit="0"),
    )

    assert response.status_code == 200
    assert line_events() == []
