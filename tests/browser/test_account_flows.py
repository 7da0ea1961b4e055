import base64
import hashlib
import hmac
import re
import struct
import time
from types import SimpleNamespace

import pytest
from allauth.mfa.totp.internal import auth as totp_auth
from django.core import mail

from tests.clock import FakeClock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-Long-and-unusual-passphrase-42"


def totp_code(secret: str, at: float | None = None) -> str:
    """Return the RFC 6238 code an authenticator app would show for `secret`."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    counter = int((at or time.time()) // 30)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def link_in_last_email(pattern: str) -> str:
    match = re.search(pattern, mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match.group(1)


def sign_up_and_verify(page, email: str) -> None:
    page.goto("/accounts/signup/")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create account", exact=True).click()
    page.get_by_role("heading", name="Check your email").wait_for()

    page.goto(link_in_last_email(r"https?://[^/\s]+(/accounts/confirm-email/\S+/)"))
    page.get_by_role("button", name="Confirm email").click()


def test_sign_up_verify_log_in_and_log_out(page):
    sign_up_and_verify(page, "browser@example.com")

    # Confirming the address signs the user in and lands on the console home.
    page.get_by_role("heading", name=re.compile("Welcome")).wait_for()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("link", name="Sign in").first.wait_for()

    page.goto("/accounts/login/")
    page.get_by_label("Email", exact=True).fill("browser@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()

    page.get_by_role("heading", name=re.compile("Welcome")).wait_for()
    for section in ["Tokens", "Recharge", "Logs", "Pricing", "Announcements", "Profile"]:
        nav = page.get_by_role("navigation", name="Main")
        assert nav.get_by_role("link", name=section, exact=True).is_visible()


def test_turning_on_two_factor_authentication(page, monkeypatch):
    # The codes are checked against a clock the test moves (allauth reads time.time()).
    clock = FakeClock(time.time())
    monkeypatch.setattr(totp_auth, "time", SimpleNamespace(time=clock))
    sign_up_and_verify(page, "mfa@example.com")
    page.get_by_role("heading", name=re.compile("Welcome")).wait_for()

    page.goto("/profile/")
    page.get_by_role("link", name="Turn it on").click()
    page.get_by_role("button", name="Set up").click()
    # Signed in by the email link, not a password: allauth asks for it first.
    page.get_by_role("heading", name="Confirm it's you").wait_for()
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    secret = page.locator("#authenticator_secret").input_value()
    used = totp_code(secret, at=clock())
    page.get_by_label("Authenticator code").fill(used)
    page.get_by_role("button", name="Activate").click()

    # Recovery codes are offered right after activation.
    page.get_by_role("heading", name="Recovery codes").wait_for()
    page.goto("/profile/")
    assert page.get_by_text("On", exact=True).is_visible()

    page.get_by_role("button", name="Sign out").click()
    page.goto("/accounts/login/")
    page.get_by_label("Email", exact=True).fill("mfa@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()

    # The second factor is asked for before the console opens. A code already used
    # during activation is refused as a replay: the app shows the next one.
    page.get_by_label("Code").wait_for()
    while totp_code(secret, at=clock()) == used:
        clock.advance(30)
    page.get_by_label("Code").fill(totp_code(secret, at=clock()))
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name=re.compile("Welcome")).wait_for()
