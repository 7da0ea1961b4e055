"""The home page knows how far a user got, at a laptop's and a phone's size; the Relay
API page lists every /v1 route the relay serves."""

import re

import pytest

from billing.models import Account
from relay.calls import CALLS
from tests.browser.conftest import SIZES, look, open_menu, resize, sign_in
from tests.factories import UserFactory
from tokens.services import token_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _fits(page) -> None:
    width = page.viewport_size["width"]
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width


@pytest.mark.parametrize("size", list(SIZES))
def test_the_home_page_walks_a_new_user_from_a_key_to_the_first_call(
    page, live_server, settings, size
):
    settings.COMET_SIGNUP_CREDIT_USD = "5"
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    user = UserFactory()
    resize(page, size)
    base_url = f"{live_server.url}/v1"

    # No token yet: create a key; the welcome credit is named.
    sign_in(page, user)
    page.goto("/")
    onboarding = page.locator("#home-onboarding")
    assert onboarding.get_attribute("data-stage") == "create-key"
    assert "$5.00 welcome credit" in page.locator("#home-welcome-credit").inner_text()
    assert base_url in onboarding.inner_text()
    assert page.locator("#home-balance").inner_text() == "$5.00"
    _fits(page)
    look(page, f"home-create-key-{size}")
    onboarding.get_by_role("button", name="Create an API key").click()
    page.wait_for_url("**/tokens/new/")

    # A token but no call: the quickstart, on this server's real address.
    token_create(user=user, name="laptop")
    page.goto("/")
    assert onboarding.get_attribute("data-stage") == "first-call"
    assert page.locator("#home-base-url").inner_text() == base_url
    onboarding.get_by_role("tab", name="Python").click()
    panel = onboarding.get_by_role("tabpanel")
    assert f'OpenAI(base_url="{base_url}", api_key="sk-your-key")' in panel.inner_text()
    panel.get_by_role("button", name="Copy Python").click()
    assert base_url in page.evaluate("() => navigator.clipboard.readText()")
    _fits(page)
    look(page, f"home-first-call-{size}")

    # Calls made: the usage summary; the balance cards keep their ids.
    Account.objects.filter(pk=user.pk).update(request_count=3)
    page.goto("/")
    assert onboarding.get_attribute("data-stage") == "in-use"
    assert page.locator("#home-requests").inner_text() == "3"
    assert page.locator("#home-spend-today").is_visible()
    assert page.locator("#home-welcome-credit").count() == 0
    _fits(page)
    look(page, f"home-in-use-{size}")


def test_without_a_welcome_credit_the_home_page_says_top_up(page, settings):
    settings.COMET_SIGNUP_CREDIT_USD = "0"
    user = UserFactory()
    sign_in(page, user)

    page.goto("/")

    assert page.locator("#home-welcome-credit").count() == 0
    assert page.locator("#home-onboarding").get_by_role("link", name="top up").is_visible()


@pytest.mark.parametrize("size", list(SIZES))
def test_the_relay_api_page_lists_every_route_with_the_real_base_url(page, live_server, size):
    user = UserFactory()
    resize(page, size)
    sign_in(page, user)

    open_menu(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Relay API").click()
    page.get_by_role("heading", name="Relay API", exact=True).wait_for()
    text = page.locator("main").inner_text()
    for path in [*CALLS, "/v1/models"]:
        assert path in text
    assert f"curl {live_server.url}/v1/embeddings" in text
    _fits(page)
    look(page, f"relay-api-{size}")

    # The API docs link here: above the docs, and in the API's description.
    page.goto("/api/docs/")
    page.locator("#swagger-ui").get_by_role("link", name="Relay API", exact=True).wait_for()
    docs_links = page.get_by_role("navigation", name="Documentation")
    docs_links.get_by_role("link", name=re.compile("^Relay API")).click()
    page.get_by_role("heading", name="Relay API", exact=True).wait_for()
