"""A new customer's first visit in Chinese: switch to 中文 signed out, sign up, confirm the
address from the email, create a token, read the logs and the recharge page. Every page on
the way, and the email, has no English beyond names, units and code."""

import re

import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from accounts.models import User
from tests.comet.english_left import english_left

from .conftest import SIZES, look, resize

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-Long-and-unusual-passphrase-42"
EMAIL = "xiaoming@example.com"


def no_english(page, name: str) -> None:
    """The page as the browser has it now (scripts run) shows no English; a picture is kept."""
    page.wait_for_load_state("networkidle")
    look(page, f"journey-zh-{name}")
    assert english_left(page.content(), {"xiaoming", "example"}) == [], page.url


@pytest.mark.parametrize("size", SIZES)
def test_a_visitor_switches_to_chinese_signs_up_and_uses_the_console_in_chinese(page, size):
    call_command("load_demo_catalog", verbosity=0)
    call_command("load_demo_discounts", verbosity=0)
    resize(page, size)

    page.goto("/")
    with page.expect_navigation():
        page.locator(".language-choice button[value=zh-hans]").click()
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    no_english(page, f"landing-{size}")

    page.goto(reverse("account_signup"))
    no_english(page, f"signup-{size}")
    page.locator("main input[name=email]").fill(EMAIL)
    page.locator("main input[name=password1]").fill(PASSWORD)
    page.locator("main input[name=password2]").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile("/accounts/confirm-email/"))
    no_english(page, f"verification-sent-{size}")

    # The page's language became the customer's: the email is Chinese too.
    assert User.objects.get(email=EMAIL).language == "zh-hans"
    [email] = mail.outbox
    assert english_left(f"<p>{email.subject}</p><pre>{email.body}</pre>") == []
    link = re.search(r"https?://[^/\s]+(/accounts/confirm-email/\S+/)", email.body).group(1)
    page.goto(link)
    no_english(page, f"confirm-{size}")
    with page.expect_navigation():
        page.locator("main form button[type=submit]").click()
    no_english(page, f"home-{size}")

    page.goto(reverse("tokens:list"))
    no_english(page, f"tokens-empty-{size}")
    page.locator(f"main a[href='{reverse('tokens:create')}']").click()
    no_english(page, f"token-form-{size}")
    page.locator("main input[name=name]").fill("笔记本")
    page.locator("main form button[type=submit]").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    no_english(page, f"token-key-{size}")
    dialog.locator("[data-close-dialog]").click()
    dialog.wait_for(state="hidden")
    no_english(page, f"tokens-{size}")

    page.goto(reverse("console:logs"))
    no_english(page, f"logs-{size}")
    page.goto(reverse("console:recharge"))
    no_english(page, f"recharge-{size}")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
