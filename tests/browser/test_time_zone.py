"""The browser's time zone is sent once, by a script file the CSP allows, and the pages then
show times in it (README, "Time zones")."""

import time

import pytest
from django.urls import reverse

from accounts.models import User
from tests.browser.conftest import sign_in
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def berlin_page(browser, live_server):
    """A page whose browser says it is in Europe/Berlin; fails on any console error (CSP).

    (Chromium names some zones by their old tz names, e.g. Asia/Calcutta for Asia/Kolkata:
    those are kept as sent, being zones zoneinfo knows.)
    """
    context = browser.new_context(base_url=live_server.url, timezone_id="Europe/Berlin")
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.sent_zones = []
    page.on(
        "request",
        lambda request: (
            page.sent_zones.append(request.post_data)
            if request.url.endswith(reverse("accounts:browser-time-zone"))
            else None
        ),
    )
    yield page
    context.close()
    assert errors == []


def _zone_of(user: User, *, within: float = 10.0) -> str:
    deadline = time.monotonic() + within
    while True:
        user.refresh_from_db()
        if user.time_zone or time.monotonic() > deadline:
            return user.time_zone
        time.sleep(0.1)


def test_the_browsers_zone_is_stored_from_the_first_page_and_shown_after(berlin_page):
    user = UserFactory()
    sign_in(berlin_page, user)

    assert _zone_of(user) == "Europe/Berlin"

    berlin_page.goto("/profile/")
    assert berlin_page.locator("#time-zone-choice").input_value() == "Europe/Berlin"
    assert berlin_page.get_by_text("(Europe/Berlin)").count() >= 1
    # Sent once: the pages of a user with a zone do not load the script.
    berlin_page.goto("/logs/")
    berlin_page.get_by_role("heading", name="Logs").first.wait_for()
    assert berlin_page.sent_zones == ["time_zone=Europe%2FBerlin"]


def test_a_saved_zone_is_not_replaced_by_the_browsers(berlin_page):
    user = UserFactory(time_zone="Asia/Tokyo")
    sign_in(berlin_page, user)
    berlin_page.goto("/logs/")
    berlin_page.get_by_role("heading", name="Logs").first.wait_for()

    assert berlin_page.sent_zones == []
    user.refresh_from_db()
    assert user.time_zone == "Asia/Tokyo"


def test_choosing_a_zone_on_the_profile_changes_the_times_shown(berlin_page):
    user = UserFactory(time_zone="Europe/Berlin")
    sign_in(berlin_page, user)
    berlin_page.goto("/profile/")

    berlin_page.locator("#time-zone-choice").select_option("America/New_York")
    berlin_page.locator("#time-zone").get_by_role("button").click()

    berlin_page.get_by_text("Time zone saved.").wait_for()
    assert berlin_page.locator("#time-zone-choice").input_value() == "America/New_York"
    user.refresh_from_db()
    assert user.time_zone == "America/New_York"
