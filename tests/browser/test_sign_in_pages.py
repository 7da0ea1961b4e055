"""Every sign-in page in Comet's words and look, at both sizes, and confirming an address
in the browser that signed up signs in."""

import re

import pytest
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.core import mail

from tests.browser.conftest import SIZES, look, open_menu, resize, sign_in
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-Long-and-unusual-passphrase-42"
# Long enough to overflow a phone's card if anything on the page did not wrap.
LONG_EMAIL = "a.rather.long.address.that.must.wrap.inside.the.card@subdomain.example.com"


def fits(page) -> None:
    """The page scrolls only vertically: nothing sticks out sideways."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.url


def look_at_both_sizes(page, name: str) -> None:
    for size in SIZES:
        resize(page, size)
        fits(page)
        look(page, f"sign-in-{name}-{size}")


def last_link(pattern: str) -> str:
    match = re.search(pattern, mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match.group(1)


def sign_up(page, email: str) -> None:
    page.goto("/accounts/signup/")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("heading", name="Check your email").wait_for()


def test_entrance_pages(page):
    UserFactory(email="member@example.com")

    page.goto("/accounts/login/")
    page.get_by_role("heading", name="Sign in").wait_for()
    assert page.get_by_label("Keep me signed in").is_visible()
    look_at_both_sizes(page, "login")
    page.get_by_label("Email", exact=True).fill(LONG_EMAIL)
    page.get_by_label("Password", exact=True).fill("wrong-password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.locator(".auth-card .form-errors").get_by_text("are not correct").wait_for()
    look_at_both_sizes(page, "login-error")

    page.get_by_role("link", name="Create account").click()
    page.get_by_role("heading", name="Create account").wait_for()
    look_at_both_sizes(page, "signup")
    page.get_by_label("Email", exact=True).fill(LONG_EMAIL)
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Password again", exact=True).fill("different")
    page.get_by_role("button", name="Create account").click()
    page.locator(".auth-card .field-error").first.wait_for()
    look_at_both_sizes(page, "signup-error")

    sign_up(page, "newcomer@example.com")
    look_at_both_sizes(page, "verification-sent")
    page.goto(last_link(r"https?://[^/\s]+(/accounts/confirm-email/\S+/)"))
    page.get_by_role("heading", name="Confirm your email").wait_for()
    look_at_both_sizes(page, "email-confirm")
    page.goto("/accounts/confirm-email/not-a-real-key/")
    page.get_by_text("expired or is invalid").wait_for()
    look_at_both_sizes(page, "email-confirm-invalid")

    page.goto("/accounts/password/reset/")
    page.get_by_role("heading", name="Reset your password").wait_for()
    look_at_both_sizes(page, "password-reset")
    page.get_by_label("Email", exact=True).fill("member@example.com")
    page.get_by_role("button", name="Send reset link").click()
    page.get_by_role("heading", name="Check your email").wait_for()
    look_at_both_sizes(page, "password-reset-done")
    page.goto(last_link(r"https?://[^/\s]+(/accounts/password/reset/key/\S+/)"))
    page.get_by_role("heading", name="Choose a new password").wait_for()
    look_at_both_sizes(page, "password-reset-from-key")
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("New password again", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Set new password").click()
    page.get_by_role("heading", name="Password changed").wait_for()
    look_at_both_sizes(page, "password-reset-from-key-done")
    page.goto("/accounts/password/reset/key/1-not-a-key/")
    page.get_by_role("heading", name="Reset link expired").wait_for()
    look_at_both_sizes(page, "password-reset-bad-key")


def test_management_and_two_factor_pages(page):
    user = UserFactory(email="manager@example.com")
    sign_in(page, user)

    page.goto("/accounts/password/change/")
    page.get_by_role("heading", name="Change password").wait_for()
    look_at_both_sizes(page, "password-change")
    page.get_by_label("Current password").fill("not-my-password")
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("New password again", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Change password").click()
    page.locator(".field-error").first.wait_for()
    look_at_both_sizes(page, "password-change-error")

    page.goto("/accounts/2fa/")
    page.get_by_role("heading", name="Two-factor authentication").wait_for()
    look_at_both_sizes(page, "mfa-index")
    page.get_by_role("button", name="Set up").click()
    # The failed password change above asks for the password again first.
    page.get_by_role("heading", name="Confirm it's you").wait_for()
    look_at_both_sizes(page, "reauthenticate")
    page.get_by_label("Password", exact=True).fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    page.get_by_role("heading", name="Set up two-factor authentication").wait_for()
    look_at_both_sizes(page, "mfa-totp-activate")

    # An unconfirmed address stops two-factor from being turned on: added after.
    page.goto("/accounts/email/")
    page.get_by_label("Email", exact=True).fill(LONG_EMAIL)
    page.get_by_role("button", name="Add email").click()
    page.get_by_text(LONG_EMAIL).first.wait_for()
    page.get_by_role("heading", name="Email addresses").wait_for()
    look_at_both_sizes(page, "email-addresses")

    page.goto("/accounts/logout/")
    page.get_by_role("heading", name="Sign out").wait_for()
    look_at_both_sizes(page, "logout")

    TOTP.activate(user, generate_totp_secret())
    RecoveryCodes.activate(user)
    page.goto("/accounts/2fa/")
    page.get_by_role("button", name="Turn off").wait_for()
    look_at_both_sizes(page, "mfa-index-on")
    page.goto("/accounts/2fa/recovery-codes/")
    page.get_by_role("heading", name="Recovery codes").wait_for()
    look_at_both_sizes(page, "mfa-recovery-codes")
    page.goto("/accounts/2fa/recovery-codes/generate/")
    page.get_by_role("heading", name="Generate new recovery codes").wait_for()
    look_at_both_sizes(page, "mfa-recovery-codes-generate")
    page.goto("/accounts/2fa/totp/deactivate/")
    page.get_by_role("heading", name="Turn off two-factor authentication").wait_for()
    look_at_both_sizes(page, "mfa-totp-deactivate")
    page.goto("/accounts/2fa/reauthenticate/")
    page.get_by_role("heading", name="Confirm it's you").wait_for()
    look_at_both_sizes(page, "mfa-reauthenticate")

    open_menu(page)
    page.get_by_role("button", name="Sign out").click()
    page.goto("/accounts/login/")
    page.get_by_label("Email", exact=True).fill(user.email)
    page.get_by_label("Password", exact=True).fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name="Two-factor authentication").wait_for()
    look_at_both_sizes(page, "mfa-authenticate")
    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.locator(".auth-card .field-error").first.wait_for()
    look_at_both_sizes(page, "mfa-authenticate-error")


def test_confirming_in_the_browser_that_signed_up_signs_in(page):
    sign_up(page, "same-browser@example.com")

    page.goto(last_link(r"https?://[^/\s]+(/accounts/confirm-email/\S+/)"))
    page.get_by_role("button", name="Confirm email").click()

    page.get_by_role("heading", name=re.compile("Welcome")).wait_for()
    assert page.get_by_role("button", name="Sign out").is_visible()
    # The password was just chosen: the first token needs no second one
    page.goto("/tokens/new/")
    page.get_by_role("heading", name="New token").wait_for()


def test_confirming_in_another_browser_confirms_and_asks_for_the_password(page, browser):
    sign_up(page, "other-browser@example.com")
    link = last_link(r"https?://[^/\s]+(/accounts/confirm-email/\S+/)")

    other = browser.new_context(base_url=page.url.split("/accounts/")[0])
    try:
        other_page = other.new_page()
        other_page.goto(link)
        other_page.get_by_role("button", name="Confirm email").click()
        other_page.get_by_role("heading", name="Sign in").wait_for()
        other_page.get_by_label("Email", exact=True).fill("other-browser@example.com")
        other_page.get_by_label("Password", exact=True).fill(PASSWORD)
        other_page.get_by_role("button", name="Sign in", exact=True).click()
        other_page.get_by_role("heading", name=re.compile("Welcome")).wait_for()
    finally:
        other.close()
