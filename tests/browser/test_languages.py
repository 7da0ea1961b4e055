"""Chinese pages: the header's switcher works by keyboard, signed out, at both sizes, and the
home and pricing pages in Chinese fit the window (screenshots for a reviewer)."""

import pytest

from .conftest import SIZES, look, resize, sign_in
from .test_layout import customer  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def fits_the_window(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_the_switcher_turns_pages_chinese_by_keyboard_and_back(page, customer):  # noqa: F811
    resize(page, "phone")
    page.goto("/pricing?vendor=")
    assert page.locator("html").get_attribute("lang") == "en"
    switch = page.get_by_role("button", name="Language: 简体中文")  # "中文" on a phone
    assert switch.is_visible(), "the switcher stays outside the folded menu"
    switch.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/pricing?vendor=")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    assert page.get_by_role("button", name="菜单").is_visible()

    for size in SIZES:
        resize(page, size)
        page.goto("/pricing")
        assert "输入 / 1M" in page.content()
        look(page, f"pricing-zh-{size}")
        assert fits_the_window(page)
        items = page.locator(".site-header nav > :visible").all()
        middles = [box["y"] + box["height"] / 2 for box in (item.bounding_box() for item in items)]
        assert max(middles) - min(middles) < 10, "the header keeps one row"

    sign_in(page, customer)
    for size in SIZES:
        resize(page, size)
        page.goto("/")
        assert page.locator("html").get_attribute("lang") == "zh-hans"
        assert page.get_by_text("余额", exact=True).first.is_visible()
        assert fits_the_window(page)
        look(page, f"home-zh-{size}")

    resize(page, "desktop")  # the full name on a laptop
    with page.expect_navigation():
        page.get_by_role("button", name="English").click()  # named "Language: English" in Chinese
    assert page.locator("html").get_attribute("lang") == "en"
