import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from announcements.models import Announcement
from models_catalog import selectors, services
from models_catalog.models import CatalogModel, PriceChange, PriceChangeBatch, PricingGroup
from models_catalog.tasks import price_changes_apply_due_task
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def record(target, admin, reason="Vendor price change", **kwargs):
    new_prices = kwargs.pop("new_prices", {"model_ratio": Decimal("1.5")})
    return services.price_change_record(
        target=target,
        new_prices=new_prices,
        reason=reason,
        changed_by=admin,
        source=PriceChange.Source.FORM,
        **kwargs,
    )


def test_a_change_records_old_and_new_who_and_why_and_applies_now(catalog, admin_user):
    model = catalog["gpt-4o"]

    change = record(model, admin_user, new_prices={"model_ratio": Decimal("1.5")})

    model.refresh_from_db()
    assert model.model_ratio == Decimal("1.5")
    assert change.old_model_ratio == Decimal("1.25")
    assert change.new_model_ratio == Decimal("1.5")
    assert change.old_completion_ratio == change.new_completion_ratio == Decimal(4)
    assert change.changed_by == admin_user
    assert change.reason == "Vendor price change"
    assert change.status == PriceChange.Status.APPLIED


def test_a_change_is_announced_in_its_batch(catalog, admin_user):
    record(catalog["gpt-4o"], admin_user)
    record(catalog["o3"], admin_user, new_prices={"completion_ratio": Decimal(5)})

    batch = PriceChangeBatch.objects.get()
    announcement = batch.announcement
    assert announcement.category == Announcement.Category.PRICE_ADJUSTMENT
    assert "gpt-4o" in announcement.title
    assert "o3" in announcement.title
    assert "Input / 1M tokens: $2.50 → $3.00" in announcement.body_markdown
    assert "Output / 1M tokens: $8.00 → $10.00" in announcement.body_markdown
    assert Announcement.objects.count() == 1


def test_refusals_change_nothing(catalog, admin_user):
    model = catalog["gpt-4o"]
    customer = UserFactory()

    with pytest.raises(services.PriceChangeError, match="reason"):
        record(model, admin_user, reason="  ")
    with pytest.raises(PermissionError):
        record(model, customer)
    with pytest.raises(services.PriceChangeError, match="above 0"):
        record(model, admin_user, new_prices={"model_ratio": Decimal(0)})
    with pytest.raises(services.PriceChangeError, match="above 0"):
        record(model, admin_user, new_prices={"completion_ratio": Decimal(-1)})
    with pytest.raises(services.PriceChangeError, match=r"exactly one unit"):
        record(model, admin_user, new_prices={"price_per_call": 1000})

    model.refresh_from_db()
    assert model.model_ratio == Decimal("1.25")
    assert model.price_per_call is None
    assert not PriceChange.objects.exists()
    assert not PriceChangeBatch.objects.exists()
    assert not Announcement.objects.exists()


def test_same_price_records_nothing(catalog, admin_user):
    assert (
        record(catalog["gpt-4o"], admin_user, new_prices={"model_ratio": Decimal("1.25")}) is None
    )
    assert not PriceChange.objects.exists()


def test_group_ratio_changes_through_the_same_service(catalog, admin_user, default_group):
    change = record(default_group, admin_user, new_prices={"group_ratio": Decimal("0.8")})

    default_group.refresh_from_db()
    assert default_group.group_ratio == Decimal("0.8")
    assert (change.old_group_ratio, change.new_group_ratio) == (Decimal(1), Decimal("0.8"))
    price = selectors.model_price(model_name="gpt-4o", pricing_group_id=None)
    assert price.group_ratio == Decimal("0.8")


def test_cached_price_lookup_is_dropped_when_the_price_changes(catalog, admin_user):
    before = selectors.model_price(model_name="gpt-4o", pricing_group_id=None)
    assert before.model_ratio == Decimal("1.25")

    record(catalog["gpt-4o"], admin_user)

    after = selectors.model_price(model_name="gpt-4o", pricing_group_id=None)
    assert after.model_ratio == Decimal("1.5")


def test_price_lookup_answers_none_for_unknown_and_disabled_models(
    catalog, django_assert_num_queries
):
    assert selectors.model_price(model_name="no-such-model", pricing_group_id=None) is None
    catalog["o1"].is_enabled = False
    catalog["o1"].save()
    assert selectors.model_price(model_name="o1", pricing_group_id=None) is None
    assert "o1" not in selectors.enabled_model_names()
    assert "gpt-4o" in selectors.enabled_model_names()
    selectors.model_price(model_name="gpt-4o", pricing_group_id=None)

    with django_assert_num_queries(0):
        price = selectors.model_price(model_name="gpt-4o", pricing_group_id=None)
        assert selectors.model_price(model_name="no-such-model", pricing_group_id=None) is None

    assert price.kind == "chat"
    assert price.context_window == 128_000
    assert price.completion_reserve == 4_096
    reasoning = selectors.model_price(model_name="o3", pricing_group_id=None)
    assert reasoning is not None
    assert reasoning.completion_reserve == 16_384
    assert price.cached_ratio == Decimal("0.5")
    assert price.price_per_call is None


@pytest.mark.django_db(transaction=True)
def test_async_price_lookup_matches_the_sync_one(catalog):
    enterprise = PricingGroup.objects.get(name="enterprise")

    def lookup(**kwargs):
        # A thread of its own: the browser tests leave an event loop running in this one.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, selectors.amodel_price(**kwargs)).result()

    price = lookup(model_name="flux-1.1-pro", pricing_group_id=enterprise.pk)

    assert price == selectors.model_price(model_name="flux-1.1-pro", pricing_group_id=enterprise.pk)
    assert price.price_per_call == 40_000
    assert price.model_ratio is None
    assert price.group_ratio == Decimal("0.9")
    assert lookup(model_name="nope", pricing_group_id=None) is None


def test_scheduled_change_waits_for_its_time_then_applies_once(catalog, admin_user):
    model = catalog["claude-sonnet-4-20250514"]
    now = timezone.now()
    at = now + timedelta(hours=1)

    change = record(model, admin_user, new_prices={"model_ratio": Decimal(2)}, effective_at=at)

    # Before its time: announced, price unchanged, the beat task does nothing.
    assert change.status == PriceChange.Status.SCHEDULED
    assert "takes effect" in change.batch.announcement.body_markdown
    assert price_changes_apply_due_task() == 0
    assert services.price_changes_apply_due(now=at - timedelta(seconds=1)) == 0
    model.refresh_from_db()
    assert model.model_ratio == Decimal("1.5")

    # At its time: applied, once.
    assert services.price_changes_apply_due(now=at) == 1
    assert services.price_changes_apply_due(now=at + timedelta(minutes=5)) == 0
    model.refresh_from_db()
    change.refresh_from_db()
    assert model.model_ratio == Decimal(2)
    assert change.status == PriceChange.Status.APPLIED
    assert change.applied_at == at
    assert PriceChange.objects.filter(catalog_model=model).count() == 1


def test_a_scheduled_change_must_leave_time_to_email_subscribers(catalog, admin_user):
    soon = timezone.now() + timedelta(minutes=2)

    with pytest.raises(services.PriceChangeError, match="at least 10 minutes ahead"):
        record(catalog["gpt-4o"], admin_user, effective_at=soon)
    with pytest.raises(services.PriceChangeError, match="past"):
        record(catalog["gpt-4o"], admin_user, effective_at=timezone.now() - timedelta(hours=1))

    assert not PriceChange.objects.exists()


def test_a_cancelled_scheduled_change_never_applies(catalog, admin_user):
    at = timezone.now() + timedelta(hours=1)
    change = record(catalog["gpt-4o"], admin_user, effective_at=at)

    assert services.price_change_cancel(change=change, cancelled_by=admin_user)

    assert services.price_changes_apply_due(now=at + timedelta(minutes=1)) == 0
    assert CatalogModel.objects.get(name="gpt-4o").model_ratio == Decimal("1.25")
    announcement = Announcement.objects.get()
    assert announcement.title == "Price adjustment withdrawn"
    assert "gpt-4o" not in announcement.body_markdown


def test_changes_after_a_batch_closes_open_a_new_batch(catalog, admin_user):
    first = record(catalog["gpt-4o"], admin_user)
    assert services.price_change_batch_close(batch_id=first.batch_id, now=first.batch.closes_at)

    second = record(catalog["o3"], admin_user)

    assert second.batch_id != first.batch_id
    assert PriceChangeBatch.objects.filter(status="open").count() == 1
    assert Announcement.objects.count() == 2


def test_demo_catalog_loads_once_and_keeps_admin_edits(catalog, admin_user):
    from django.core.management import call_command

    record(catalog["gpt-4o"], admin_user)
    count = CatalogModel.objects.count()

    call_command("load_demo_catalog")

    assert CatalogModel.objects.count() == count >= 30
    assert CatalogModel.objects.get(name="gpt-4o").model_ratio == Decimal("1.5")
    assert CatalogModel.objects.values("vendor").distinct().count() >= 6
