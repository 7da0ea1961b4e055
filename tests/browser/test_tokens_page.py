import re

import pytest

from accounts.models import Token
from accounts.tokens import key_hash
from tests.factories import DEFAULT_PASSWORD, UserFactory

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
