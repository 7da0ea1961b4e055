"""The console's pages pass axe-core's checks, in the light and the dark theme, and at
both sizes; the header's theme menu is remembered and applied before the page paints.

axe-core is vendored in tests/browser/vendor/ (VERSIONS.txt) and injected into each
page; a serious or critical violation fails the test. Pages other workers own are
checked where they are listed in PAGES (signed in) and SIGNED_OUT_PAGES.
"""

import json
from pathlib import Path

import pytest

from models_catalog.demo_catalog import load_demo_catalog
from tests.factories import UserFactory

from .conftest import SIZES, look, resize, sign_in
from .test_layout import seed_customer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
PAGES = {
    "home": "/",
    "logs": "/logs/",
    "pricing": "/pricing",
    "orders": "/billing/orders/",
    "history": "/billing/history/",
    "tokens": "/tokens/",
    "recharge": "/recharge/",
    "profile": "/profile/",
    "relay-api": "/relay-api/",
}
SIGNED_OUT_PAGES = {
    "pricing": "/pricing",
    "sign-in": "/accounts/login/",
    "sign-up": "/accounts/signup/",
    "password-reset": "/accounts/password/reset/",
}
THEMES = ("light", "dark")


@pytest.fixture
def axe_page(browser, live_server):
    """A page axe-core can be injected into, failing the test on any console error.

    Playwright injects a script tag's text inline, which Comet's CSP refuses: this
    context bypasses the CSP for that one script. Every other browser test runs
    under the CSP (`tests/browser/test_pages_under_csp.py`).
    """
    context = browser.new_context(base_url=live_server.url, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    yield page
    context.close()
    assert errors == []


def serious_violations(page) -> list[str]:
    """Run axe-core on the page; return its serious and critical violations, described."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        """async () => {
          const results = await axe.run(document, { resultTypes: ["violations"] });
          return results.violations
            .filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                           nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + ": "
                             + (n.failureSummary || "").replace(/\\s+/g, " ").slice(0, 200)) }));
        }"""
    )
    return [json.dumps(violation) for violation in violations]


def choose_theme(page, theme: str) -> None:
    page.get_by_label("Theme").select_option(theme)
    assert page.evaluate("document.documentElement.dataset.theme") == theme


def test_console_pages_pass_axe_in_both_themes(axe_page):
    page = axe_page
    load_demo_catalog()
    user = seed_customer()
    sign_in(page, user)
    found = {}
    for theme in THEMES:
        for size in SIZES:
            resize(page, size)
            page.goto("/")
            choose_theme(page, theme)
            for name, url in PAGES.items():
                page.goto(url)
                page.wait_for_load_state("networkidle")
                if name == "logs":  # the breakdown of a request, opened
                    page.locator(".cost-toggle").first.click()
                violations = serious_violations(page)
                if violations:
                    found[f"{name} {theme} {size}"] = violations
                if size == "desktop":
                    look(page, f"{name}-{theme}")
    assert found == {}


def test_public_and_sign_in_pages_pass_axe_signed_out(axe_page):
    page = axe_page
    load_demo_catalog()
    found = {}
    for theme in THEMES:
        for size in SIZES:
            resize(page, size)
            page.goto("/pricing")
            choose_theme(page, theme)
            for name, url in SIGNED_OUT_PAGES.items():
                page.goto(url)
                violations = serious_violations(page)
                if violations:
                    found[f"{name} {theme} {size}"] = violations
    assert found == {}


def test_the_theme_menu_is_remembered_and_applied_before_the_first_paint(axe_page):
    page = axe_page
    sign_in(page, UserFactory())
    page.emulate_media(color_scheme="light")
    page.goto("/logs/")
    # theme.js runs in <head>, before any stylesheet, not deferred: no flash of the
    # other theme on a page load.
    first = page.evaluate(
        """() => {
          const script = document.head.querySelector("script[src*='theme']");
          const sheet = document.head.querySelector("link[rel=stylesheet]");
          return { blocking: !script.defer && !script.async,
                   beforeStyles: !!(script.compareDocumentPosition(sheet)
                                    & Node.DOCUMENT_POSITION_FOLLOWING) };
        }"""
    )
    assert first == {"blocking": True, "beforeStyles": True}

    background = "getComputedStyle(document.documentElement).backgroundColor"
    light = page.evaluate(background)
    choose_theme(page, "dark")
    dark = page.evaluate(background)
    assert dark != light
    # The charts draw again in the theme's colours: their text reads on a dark page.
    page.wait_for_selector("#chart-by-token[data-chart-ready]")
    tick = page.evaluate(
        "Chart.getChart(document.getElementById('chart-by-token')).options.scales.y.ticks.color"
    )
    assert tick == page.evaluate(
        "getComputedStyle(document.documentElement).getPropertyValue('--pico-color').trim()"
    )

    page.reload()  # remembered on this device
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert page.get_by_label("Theme").input_value() == "dark"
    assert page.evaluate(background) == dark

    page.get_by_label("Theme").select_option("system")
    assert page.evaluate("document.documentElement.hasAttribute('data-theme')") is False
    page.emulate_media(color_scheme="dark")
    assert page.evaluate(background) == dark  # following the system again
    page.reload()
    assert page.evaluate("localStorage.getItem('comet-theme')") is None

    # The keyboard reaches the menu (the last thing in the footer), and shows where it is.
    page.locator(".site-footer a").last.focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "theme-choice"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # a visible focus ring
