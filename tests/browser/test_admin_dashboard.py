"""A staff member opens the platform dashboard from the admin index, on a laptop and a phone."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from relay.services import channel_create
from tests.factories import StaffFactory, UserFactory
from tests.logs.helpers import funded_user_with_token, settle

from .conftest import SIZES, look, resize, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PANELS = (
    "Revenue",
    "Orders needing attention",
    "Spend by day",
    "Spend by model",
    "Spend by pricing group",
    "Channels: spend, errors and failovers",
    "Top accounts",
)


@pytest.fixture(autouse=True)
def _fresh_content_types():
    ContentType.objects.clear_cache()


def test_the_dashboard_shows_every_panel_at_both_sizes(page):
    customer = UserFactory(email="customer@example.com")
    token = funded_user_with_token(customer)
    channel = channel_create(name="Mock line", kind="mock", served_models=["gpt-4o"])
    for index in range(6):
        settle(
            token,
            cost=250_000 * (index + 1),
            created_at=timezone.now(),
            model=("gpt-4o", "gpt-4o-mini")[index % 2],
            channel_id=channel.pk,
            status_code=(200, 200, 429)[index % 3],
        )
    sign_in(page, StaffFactory())

    page.goto("/admin/")
    page.get_by_role("link", name="Platform dashboard").click()
    page.wait_for_url("**/admin/dashboard/")
    for size in SIZES:
        resize(page, size)
        page.reload()
        for panel in PANELS:
            assert page.get_by_role("heading", name=panel, exact=True).is_visible(), panel
        assert page.locator("#panel-accounts").get_by_text("customer@example.com").is_visible()
        assert page.locator("#panel-channels").get_by_text("Mock line").is_visible()
        assert page.locator("#panel-days meter").count() == 1
        # The page itself never scrolls sideways; wide tables scroll in their panel
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= SIZES[size][0], (size, width)
        look(page, f"admin-dashboard-{size}")
    page.get_by_role("link", name="Last 90 days").click()
    page.wait_for_url("**/admin/dashboard/?days=90")
    assert page.get_by_text("6 requests, $5.25 in all").is_visible()
