"""Admins grant a line and account limits from the user's admin page, audited; the
customer sees their line, its models and their limits."""

from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import AuditEvent, User
from accounts.services import user_line_set
from models_catalog.models import CatalogModel, PricingGroup, Vendor
from models_catalog.selectors import line_of, user_account_limits
from models_catalog.services import catalog_entry_create
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def enterprise():
    vendor = Vendor.objects.create(name="acme", display_name="Acme")
    inside = CatalogModel(name="acme-large", vendor=vendor, model_ratio=Decimal(1))
    outside = CatalogModel(name="acme-secret", vendor=vendor, model_ratio=Decimal(1))
    catalog_entry_create(entry=inside)
    catalog_entry_create(entry=outside)
    line = PricingGroup(
        name="enterprise",
        display_name="Enterprise",
        description="Dedicated line",
        allows_all_models=False,
        concurrency_limit=2_000,
        tpm_limit=30_000_000,
    )
    catalog_entry_create(entry=line)
    line.catalog_models.set([inside])
    return line


def _change_form(user: User, **changes) -> dict:
    form = {
        "email": user.email,
        "display_name": user.display_name,
        "pricing_group": "",
        "concurrency_limit": "",
        "rpm_limit": "",
        "tpm_limit": "",
        "is_active": "on",
        "language": "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
    }
    return form | changes


def test_an_admin_grants_a_line_and_a_limit_and_it_is_audited(client, enterprise):
    # Given a customer on the default line and an admin
    admin = StaffFactory()
    customer = UserFactory()
    client.force_login(admin)

    # When the admin grants the enterprise line with 5,000 in flight
    response = client.post(
        reverse("admin:accounts_user_change", args=[customer.pk]),
        _change_form(customer, pricing_group=str(enterprise.pk), concurrency_limit="5000"),
    )

    # Then it is saved, with one audit row naming the changes, by whom
    assert response.status_code == 302, response.content.decode()[:2000]
    customer.refresh_from_db()
    assert (customer.pricing_group_id, customer.concurrency_limit) == (enterprise.pk, 5_000)
    [event] = AuditEvent.objects.filter(action=AuditEvent.Action.ACCOUNT_LINE_CHANGED)
    assert (event.actor, event.user_id) == (admin, customer.pk)
    assert event.detail == {
        "changed": {"pricing_group": [None, "enterprise"], "concurrency_limit": [None, 5000]}
    }
    limits = user_account_limits(customer)
    assert (limits.concurrency_limit, limits.rpm_limit, limits.tpm_limit) == (
        5_000,
        None,
        30_000_000,
    )
    assert limits.overridden == {"concurrency_limit"}

    # And saving the page again without a change writes no row
    client.post(
        reverse("admin:accounts_user_change", args=[customer.pk]),
        _change_form(customer, pricing_group=str(enterprise.pk), concurrency_limit="5000"),
    )
    assert AuditEvent.objects.filter(action=AuditEvent.Action.ACCOUNT_LINE_CHANGED).count() == 1


def test_a_zero_limit_is_refused_and_nothing_changes():
    customer = UserFactory()

    with pytest.raises(ValueError, match="at least 1"):
        user_line_set(
            user=customer,
            pricing_group_id=None,
            concurrency_limit=0,
            rpm_limit=None,
            tpm_limit=None,
            actor=None,
        )

    assert User.objects.get(pk=customer.pk).concurrency_limit is None
    assert not AuditEvent.objects.exists()


def test_a_change_of_the_lines_models_is_seen_at_once(enterprise):
    assert line_of(pricing_group_id=enterprise.pk).model_names == {"acme-large"}

    enterprise.catalog_models.add(CatalogModel.objects.get(name="acme-secret"))

    assert line_of(pricing_group_id=enterprise.pk).model_names == {"acme-large", "acme-secret"}


def test_the_customer_sees_their_line_models_and_limits(client, enterprise):
    customer = UserFactory()
    user_line_set(
        user=customer,
        pricing_group_id=enterprise.pk,
        concurrency_limit=None,
        rpm_limit=600,
        tpm_limit=None,
        actor=None,
    )
    client.force_login(customer)

    profile = client.get(reverse("accounts:profile")).content.decode()
    pricing = client.get(reverse("pricing")).content.decode()

    start = profile.index('id="your-line"')
    card = profile[start : profile.index("</article>", start)]
    assert "Enterprise" in card
    assert "acme-large" in card
    assert "acme-secret" not in card
    assert "2,000" in card
    assert "30,000,000" in card
    assert "600" in card
    assert "set for your account" in card
    assert "acme-large" in pricing
    assert "acme-secret" not in pricing


def test_signed_out_the_pricing_page_shows_the_default_lines_models(client, enterprise):
    default = PricingGroup.objects.get(is_default=True)
    default.allows_all_models = False
    default.save()
    default.catalog_models.set(CatalogModel.objects.filter(name="acme-secret"))

    pricing = client.get(reverse("pricing")).content.decode()
    api = client.get(reverse("models_catalog:api_pricing")).json()

    assert "acme-secret" in pricing
    assert "acme-large" not in pricing
    assert [entry["model"] for entry in api] == ["acme-secret"]
