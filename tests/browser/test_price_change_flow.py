"""An admin edits a multiplier in a real browser; subscribers hear about it once."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core import mail
from django.utils import timezone

from announcements.models import Announcement
from models_catalog.demo_catalog import load_demo_catalog
from models_catalog.models import (
    CatalogModel,
    PriceChange,
    PriceChangeBatch,
    PriceChangeSubscription,
    Vendor,
)
from models_catalog.services import price_change_subscription_cancel, price_change_subscription_save
from models_catalog.tasks import price_change_batches_close_task
from tests.factories import DEFAULT_PASSWORD, StaffFactory, UserFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(autouse=True)
def _fresh_content_types():
    """Forget content type ids cached by a test that ran on a flushed database.

    In random order a test can run right after another's flush and create content types
    that its rollback then removes; the admin's log entry would cite such a stale id.
    """
    ContentType.objects.clear_cache()


def test_admin_edits_a_ratio_and_each_matching_subscriber_gets_one_email(
    page, browser, live_server, settings
):
    settings.COMET_PUBLIC_URL = live_server.url
    load_demo_catalog()
    admin = StaffFactory(email="admin@example.com")
    openai_fan = price_change_subscription_save(
        user=UserFactory(), scope="vendors", vendors=[Vendor.objects.get(name="openai")]
    )
    everything = price_change_subscription_save(user=UserFactory(), scope="all")
    anthropic_fan = price_change_subscription_save(
        user=UserFactory(), scope="vendors", vendors=[Vendor.objects.get(name="anthropic")]
    )
    gone = price_change_subscription_save(user=UserFactory(), scope="all")
    price_change_subscription_cancel(subscription=gone)
    model = CatalogModel.objects.get(name="gpt-4o")

    # The admin signs in and edits the model ratio in the change form.
    page.goto("/accounts/login/")
    page.get_by_label("Email", exact=True).fill(admin.email)
    page.get_by_label("Password", exact=True).fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name=re.compile("Welcome")).wait_for()
    page.goto(f"/admin/models_catalog/catalogmodel/{model.pk}/change/")
    page.locator("#id_model_ratio").fill("1.5")
    page.locator("#id_change_reason").fill("OpenAI list price went up")
    page.locator("input[name=_save]").click()
    page.get_by_text("was changed successfully").wait_for()

    change = PriceChange.objects.get()
    assert change.reason == "OpenAI list price went up"
    assert (change.old_model_ratio, change.new_model_ratio) == (Decimal("1.25"), Decimal("1.5"))
    assert change.changed_by == admin
    announcement = Announcement.objects.get(category="price_adjustment")
    page.goto("/announcements/")
    page.get_by_text(announcement.title).first.wait_for()
    page.goto("/pricing/models/gpt-4o")
    page.get_by_text("OpenAI list price went up").wait_for()

    # Within the window nothing is emailed; after it, one email per matching subscriber.
    assert price_change_batches_close_task() == 0
    assert mail.outbox == []
    PriceChangeBatch.objects.update(closes_at=timezone.now() - timedelta(seconds=1))
    assert price_change_batches_close_task() == 1

    recipients = sorted(address for message in mail.outbox for address in message.to)
    assert recipients == sorted([openai_fan.user.email, everything.user.email])
    assert anthropic_fan.user.email not in recipients
    assert gone.user.email not in recipients

    # The unsubscribe link works in a browser that is not signed in.
    message = next(m for m in mail.outbox if m.to == [openai_fan.user.email])
    link = re.search(r"(http\S+/pricing/unsubscribe/\S+/)", message.body).group(1)
    anonymous = browser.new_context()
    try:
        visitor = anonymous.new_page()
        visitor.goto(link)
        visitor.get_by_role("button", name="Unsubscribe").click()
        visitor.get_by_role("heading", name="You are unsubscribed").wait_for()
    finally:
        anonymous.close()
    assert not PriceChangeSubscription.objects.get(pk=openai_fan.pk).is_active
    assert PriceChangeSubscription.objects.get(pk=everything.pk).is_active


def test_pricing_page_filters_in_place_and_profile_subscribes(page, live_server):
    load_demo_catalog()
    user = UserFactory()

    page.goto("/pricing")
    table = page.locator("#pricing-table")
    table.get_by_text("gpt-4o-mini", exact=True).wait_for()
    page.get_by_placeholder("Search models").fill("claude")
    page.wait_for_function(
        "() => !document.querySelector('#pricing-table').textContent.includes('gpt-4o-mini')"
    )
    assert "claude-opus-4-20250514" in table.text_content()
    assert "q=claude" in page.url  # the filtered view has its own address
    page.get_by_label("Show raw multipliers").check()
    table.get_by_role("columnheader", name="Model ratio").wait_for()

    # Subscribing from the profile swaps the card in place.
    page.goto("/accounts/login/")
    page.get_by_label("Email", exact=True).fill(user.email)
    page.get_by_label("Password", exact=True).fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name=re.compile("Welcome")).wait_for()
    page.goto("/profile/")
    card = page.locator("#price-change-emails")
    card.get_by_label("Chosen vendors").check()
    card.get_by_text("Vendors", exact=True).click()
    card.get_by_label("Anthropic").check()
    card.get_by_role("button", name="Subscribe").click()
    card.get_by_text("On · Chosen vendors").wait_for()

    subscription = PriceChangeSubscription.objects.get(user=user)
    assert [vendor.name for vendor in subscription.vendors.all()] == ["anthropic"]
