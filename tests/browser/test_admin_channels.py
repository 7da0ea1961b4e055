"""An admin edits a channel's models and mapping as rows, and tests the channel."""

import pytest
from django.contrib.contenttypes.models import ContentType

from relay.models import Channel
from relay.services import channel_create
from tests.factories import StaffFactory

from .conftest import SIZES, look, resize, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _fresh_content_types():
    ContentType.objects.clear_cache()


def test_an_admin_maps_a_model_in_rows_and_tests_the_channel(page):
    channel = channel_create(name="Demo mock", kind="mock", served_models=["gpt-4o", "gpt-4o-mini"])
    sign_in(page, StaffFactory())

    for size in SIZES:
        resize(page, size)
        page.goto(f"/admin/relay/channel/{channel.pk}/change/")
        page.get_by_label("Requested model, row 1").fill("gpt-4o")
        page.get_by_label("Name sent upstream, row 1").fill("gpt-4o-2024-08-06")
        page.get_by_role("button", name="Save and continue editing").click()
        page.get_by_text("was changed successfully").wait_for()
        page.get_by_role("button", name="Test this channel").click()
        page.get_by_text(
            "Demo mock answered gpt-4o (sent upstream as gpt-4o-2024-08-06) in"
        ).wait_for()
        look(page, f"admin-channel-{size}")

    channel.refresh_from_db()
    assert channel.model_mapping == {"gpt-4o": "gpt-4o-2024-08-06"}
    assert Channel.objects.count() == 1
