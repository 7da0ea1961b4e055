import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

CONSOLE_SECTIONS = [
    "tokens:list",
    "billing:history",
    "console:recharge",
    "console:logs",
    "accounts:profile",
]


def test_anonymous_visitor_sees_the_welcome_page(client):
    response = client.get("/")

    assert response.status_code == 200
    assert b"Create an account" in response.content


@pytest.mark.parametrize("url_name", CONSOLE_SECTIONS)
def test_console_sections_need_a_login(client, url_name):
    response = client.get(reverse(url_name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_every_navigation_link_answers(user_client):
    home = user_client.get("/")
    assert home.status_code == 200
    for url_name in [*CONSOLE_SECTIONS, "pricing", "announcements", "console:home"]:
        url = reverse(url_name)
        assert f'href="{url}"'.encode() in home.content, url_name
        assert user_client.get(url).status_code == 200, url_name


def test_pages_are_served_under_a_csp_without_inline_script(client):
    response = client.get("/")

    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert b"<script>" not in response.content
    assert response["X-Content-Type-Options"] == "nosniff"


def test_unknown_page_gets_the_styled_404(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert b"Page not found" in response.content


def test_server_error_page_renders_without_a_request_context():
    from django.template.loader import render_to_string

    html = render_to_string("500.html")

    assert "Something went wrong" in html


def test_static_assets_are_vendored_not_fetched(client):
    html = client.get("/").content.decode()

    assert "https://" not in html.split("<body")[0]
    assert "/static/vendor/htmx/htmx.min.js" in html
    assert "/static/vendor/pico/" in html
