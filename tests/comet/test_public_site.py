"""What emails and pages say about the site: its address, its name, its support contact."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core import mail
from django.template.loader import render_to_string
from django.test import RequestFactory

from core.links import support_contact

ROOT = Path(__file__).resolve().parent.parent.parent


def local_setting(name: str, **environment: str) -> str:
    """Return a setting of `make run`'s settings module as the server would see it."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PORT", "COMET_PUBLIC_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(environment, DJANGO_SETTINGS_MODULE="comet.settings.local")
    code = f"from django.conf import settings; print(settings.{name})"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_make_run_on_another_port_links_emails_to_that_port():
    assert local_setting("COMET_PUBLIC_URL") == "http://127.0.0.1:8000"
    assert local_setting("COMET_PUBLIC_URL", PORT="8020") == "http://127.0.0.1:8020"
    # An explicit public address wins over the port.
    assert (
        local_setting("COMET_PUBLIC_URL", PORT="8020", COMET_PUBLIC_URL="https://c.example.com")
        == "https://c.example.com"
    )


def test_make_run_exports_the_port_it_serves_on():
    # The server and beat read PORT from the environment to build email links.
    assert 'export PORT="${PORT:-8000}"' in (ROOT / "bin" / "run").read_text()


def test_make_run_has_a_support_address():
    assert local_setting("COMET_SUPPORT_EMAIL") == "support@example.com"


@pytest.mark.django_db
def test_verification_email_greets_with_the_product_name_and_links_to_the_public_port(
    client, settings
):
    settings.COMET_PUBLIC_URL = "http://127.0.0.1:8020"
    client.post(
        "/accounts/signup/",
        {
            "email": "port@example.com",
            "password1": "a-Long-and-unusual-passphrase-42",
            "password2": "a-Long-and-unusual-passphrase-42",
        },
    )

    (message,) = mail.outbox
    body = message.body
    assert body.startswith("Hello from Comet,")
    assert "http://127.0.0.1:8020/accounts/confirm-email/" in body
    assert ":8000" not in body
    # The host appears only inside links, never as the site's name.
    assert body.replace("http://127.0.0.1:8020/", "").count("127.0.0.1") == 0
    assert "Questions? Contact support: support@example.com" in body
    assert message.subject == "[Comet] Confirm your email address"


def test_support_contact_prefers_the_help_desk_and_shows_the_address(settings):
    settings.COMET_SUPPORT_EMAIL = "help@example.com"
    settings.COMET_SUPPORT_URL = ""
    contact = support_contact()
    assert contact is not None
    assert (contact.href, contact.label) == ("mailto:help@example.com", "help@example.com")

    settings.COMET_SUPPORT_URL = "https://help.example.com"
    contact = support_contact()
    assert contact is not None
    assert (contact.href, contact.label) == ("https://help.example.com", "help@example.com")
    assert contact.text == "help@example.com · https://help.example.com"

    settings.COMET_SUPPORT_EMAIL = settings.COMET_SUPPORT_URL = ""
    assert support_contact() is None


@pytest.mark.parametrize("name", ["403.html", "429.html", "500.html", "503.html"])
def test_error_pages_say_how_to_reach_support(name, settings):
    settings.COMET_SUPPORT_EMAIL = "help@example.com"
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    html = render_to_string(name, request=None if name[0] == "5" else request)

    assert '<a href="mailto:help@example.com">help@example.com</a>' in html


def test_error_pages_say_nothing_of_support_when_there_is_none(settings):
    settings.COMET_SUPPORT_EMAIL = settings.COMET_SUPPORT_URL = ""
    assert "Contact support" not in render_to_string("500.html")


@pytest.mark.django_db
def test_footer_links_to_support(client):
    page = client.get("/pricing")
    assert b'Support: <a href="mailto:support@example.com">support@example.com</a>' in page.content
