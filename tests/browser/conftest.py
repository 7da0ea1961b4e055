import os

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")

# Playwright's sync API runs an event loop in the test thread; the ORM calls the
# tests make there (reading the outbox's user, say) are ordinary blocking calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def browser():
    """Launch Chromium for one test.

    Playwright's sync API keeps an event loop running in this thread while it is
    open; closing it after each test lets later tests call asyncio.run().
    """
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Debian's Chromium is not at {CHROMIUM}: run `make test` to install it.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    console_errors: list[str] = []
    page.on(
        "console",
        lambda message: console_errors.append(message.text) if message.type == "error" else None,
    )
    yield page
    context.close()
    # A CSP violation or a script error shows up as a console error.
    assert console_errors == []


# The two sizes every page is looked at: a laptop and a phone.
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
# Every browser test leaves a picture of the pages it looks at here (README, "Screenshots").
SCREENSHOTS = os.environ.get("COMET_SCREENSHOTS", "build/screenshots")


def resize(page, size: str) -> None:
    width, height = SIZES[size]
    page.set_viewport_size({"width": width, "height": height})


def look(page, name: str) -> None:
    """Save a full-page screenshot as `<SCREENSHOTS>/<name>.png` for a reviewer."""
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)


def sign_in(page, user, password: str | None = None) -> None:
    """Sign in through the login form, whatever its labels say; wait for the console."""
    from tests.factories import DEFAULT_PASSWORD

    page.goto("/accounts/login/")
    page.locator("input[name=login]").fill(user.email)
    page.locator("input[name=password]").fill(password or DEFAULT_PASSWORD)
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def open_menu(page) -> None:
    """Open the header's menu where the links fold behind it (narrow screens)."""
    toggle = page.locator("[data-nav-toggle]")
    if toggle.is_visible() and toggle.get_attribute("aria-expanded") == "false":
        toggle.click()
