"""The header: every link on one row on a laptop, folded behind "Menu" on a phone."""

import pytest

from tests.factories import StaffFactory

from .conftest import look, resize, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_links_fit_one_row_on_a_laptop_and_fold_into_a_menu_on_a_phone(page):
    sign_in(page, StaffFactory())  # staff: the longest header, with Admin
    nav = page.get_by_role("navigation", name="Main")

    resize(page, "desktop")
    page.goto("/logs/")
    assert not page.get_by_role("button", name="Menu").is_visible()
    # The links, the theme, the language and the brand: one row.
    links = nav.locator("#nav-links > li, :scope > :visible")
    middles = [
        box["y"] + box["height"] / 2 for box in (item.bounding_box() for item in links.all())
    ]
    assert max(middles) - min(middles) < 10, "every header item on one row"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    look(page, "header-desktop")

    resize(page, "phone")
    page.goto("/logs/")
    menu = page.get_by_role("button", name="Menu")
    assert menu.get_attribute("aria-expanded") == "false"
    assert not nav.get_by_role("link", name="Tokens", exact=True).is_visible()
    header_height = page.locator(".site-header").bounding_box()["height"]
    assert header_height < 100

    menu.click()
    assert menu.get_attribute("aria-expanded") == "true"
    assert nav.get_by_role("link", name="Tokens", exact=True).is_visible()
    assert page.get_by_role("button", name="Sign out").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    look(page, "header-menu-phone")
    page.keyboard.press("Escape")
    assert not nav.get_by_role("link", name="Tokens", exact=True).is_visible()
    assert page.evaluate("document.activeElement.dataset.navToggle") == ""

    # A link in the menu goes where it says
    menu.click()
    nav.get_by_role("link", name="Tokens", exact=True).click()
    page.wait_for_url("**/tokens/")
