import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_api_docs_render_under_the_strict_csp(page):
    # The `page` fixture fails the test on any console error, CSP violations included.
    page.goto("/api/docs/")

    page.get_by_role("heading", name="Comet console API").wait_for()


def test_welcome_page_renders_under_the_strict_csp(page):
    page.goto("/")

    page.get_by_role("button", name="Create an account").wait_for()
