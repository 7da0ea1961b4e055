import re

import pytest

from accounts.models import Token
from accounts.tokens import key_hash
from tests.browser.conftest import SIZES, look, resize, sign_in
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tokens.services import token_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_create_copy_disable_and_delete_a_token(page):
    user = UserFactory()
    page.goto("/accounts/login/")
    page.get_by_label("Email", exact=True).fill(user.email)
    page.get_by_label("Password", exact=True).fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name=re.compile("Welcome")).wait_for()

    # Create: the key shows once, in a dialog
    page.goto("/tokens/")
    page.get_by_role("button", name="New token").click()
    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Quota (USD)").fill("5")
    page.get_by_role("button", name="Create token").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    key = page.get_by_label("Your new API key").input_value()
    token = Token.objects.get(user=user)
    assert key_hash(key) == token.key_hash
    dialog.get_by_role("button", name="I have saved it").click()
    dialog.wait_for(state="hidden")

    # Disable inline: the row changes without a page load
    row = page.locator(f"#token-{token.pk}")
    row.get_by_role("button", name="Disable").click()
    row.get_by_text("disabled").wait_for()
    token.refresh_from_db()
    assert not token.is_enabled

    # Delete after confirming
    page.once("dialog", lambda confirm: confirm.accept())
    page.locator(f"#token-{token.pk}").get_by_role("button", name="Delete").click()
    page.get_by_text("deleted").first.wait_for()
    assert not Token.objects.filter(pk=token.pk).exists()


# --- issue 14: the key shown once, the quickstart, rolling, a phone -------------------


def _fits(page) -> None:
    """The document is no wider than the viewport (nothing scrolls sideways)."""
    width = page.viewport_size["width"]
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width


def _clipboard(page) -> str:
    return page.evaluate("() => navigator.clipboard.readText()")


def _in_view_horizontally(page, locator) -> None:
    box = locator.bounding_box()
    assert box is not None
    assert box["width"] > 0
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= page.viewport_size["width"]


@pytest.mark.parametrize("size", list(SIZES))
def test_the_key_dialog_holds_the_real_base_url_copies_and_a_reload_creates_nothing(
    page, live_server, size
):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    user = UserFactory()
    resize(page, size)
    sign_in(page, user)
    base_url = f"{live_server.url}/v1"
    assert ":8000" not in base_url  # the live server's own random port

    page.goto("/tokens/new/")
    _fits(page)
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    key = page.get_by_label("Your new API key").input_value()
    assert key_hash(key) == Token.objects.get(user=user).key_hash
    _fits(page)
    look(page, f"tokens-key-dialog-{size}")

    # The snippets: the live server's real base URL and the new key, each copyable.
    assert dialog.locator("#key-base-url").inner_text() == base_url
    dialog.get_by_role("button", name="Copy key").click()
    assert _clipboard(page) == key
    dialog.get_by_role("button", name="Copy URL").click()
    assert _clipboard(page) == base_url
    for label, needle in (
        ("curl", f"curl {base_url}/chat/completions"),
        ("Python", f'OpenAI(base_url="{base_url}", api_key="{key}")'),
        ("Node.js", f'new OpenAI({{ baseURL: "{base_url}", apiKey: "{key}" }})'),
    ):
        dialog.get_by_role("tab", name=label).click()
        panel = dialog.get_by_role("tabpanel")
        assert needle in panel.inner_text()
        panel.get_by_role("button", name=f"Copy {label}").click()
        panel.get_by_role("button", name="Copied").wait_for()
        copied = _clipboard(page)
        assert needle in copied
        assert key in copied
        if label == "curl":
            assert f"Authorization: Bearer {key}" in copied
    look(page, f"tokens-key-dialog-node-{size}")

    # Reloading the answer to the post posts the form again: nothing is created.
    page.reload()
    page.locator("#form-used-again").wait_for()
    assert Token.objects.filter(user=user).count() == 1
    assert key not in page.content()
    assert page.get_by_role("dialog").count() == 0
    _fits(page)
    look(page, f"tokens-reloaded-{size}")


@pytest.mark.parametrize("size", list(SIZES))
def test_every_token_action_is_in_view_and_a_key_can_be_rolled(page, size):
    user = UserFactory()
    for number in range(3):
        token_create(user=user, name=f"service-{number}", quota_remaining=number * 1_500_000)
    token, old_key = token_create(user=user, name="a rather long token name for the phone")
    resize(page, size)
    sign_in(page, user)

    page.goto("/tokens/")
    _fits(page)
    row = page.locator(f"#token-{token.pk}")
    for name in ("Disable", "Edit", "Roll key", "Delete"):
        action = row.get_by_role("button", name=name).or_(row.get_by_role("link", name=name))
        action.scroll_into_view_if_needed()
        assert action.is_visible()
        _in_view_horizontally(page, action)
    look(page, f"tokens-list-{size}")

    # Roll: a confirmation page first, then the new key once.
    row.get_by_role("link", name="Roll key").click()
    page.get_by_role("heading", name=re.compile("Roll the key")).wait_for()
    _fits(page)
    look(page, f"tokens-roll-confirm-{size}")
    page.get_by_role("button", name="Roll key").click()
    page.get_by_role("dialog").wait_for()
    new_key = page.get_by_label("Your new API key").input_value()
    token.refresh_from_db()
    assert new_key != old_key
    assert key_hash(new_key) == token.key_hash
    assert Token.objects.filter(user=user).count() == 4
    _fits(page)
    look(page, f"tokens-rolled-{size}")

    # A reload rolls nothing more: the key just shown keeps working.
    page.reload()
    page.locator("#form-used-again").wait_for()
    token.refresh_from_db()
    assert key_hash(new_key) == token.key_hash
