import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.logs.helpers import funded_user_with_token, settle

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def logs_page(browser, live_server):
    """A page whose console may show one kind of error only: the 400s of a bad filter.

    Browsers log every 4xx answer as "Failed to load resource"; the bad filter in
    this test is answered 400 on purpose. Any other console error fails the test.
    """
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    yield page
    context.close()
    unexpected = [text for text in errors if "status of 400" not in text]
    assert unexpected == []
    assert errors  # the bad filter was answered 400


def test_filter_the_logs_page_and_see_the_charts(logs_page):
    page = logs_page
    user = UserFactory()
    token = funded_user_with_token(user, name="laptop")
    now = timezone.now()
    for index in range(12):
        settle(
            token,
            cost=1000 + index,
            created_at=now - timedelta(minutes=index * 3 + 1),
            model=("gpt-4o", "deepseek-chat", "gpt-4o-mini")[index % 3],
            client_ip="198.51.100.1",
            prompt_tokens=100,
            completion_tokens=20,
        )
    page.goto("/accounts/login/")
    page.get_by_label("Email", exact=True).fill(user.email)
    page.get_by_label("Password", exact=True).fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name=re.compile("Welcome")).wait_for()
    page.wait_for_selector("#chart-home[data-chart-ready]")

    page.goto("/logs/")
    # Each request is a row, followed by its cost breakdown's row (hidden until opened).
    rows = page.locator("#log-results tbody tr:not(.cost-breakdown)")
    assert rows.count() == 12
    # Filter by model: htmx swaps the results and the URL keeps the filter
    page.get_by_label("Model", exact=True).fill("deepseek-chat")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"model=deepseek-chat"))
    expect(rows).to_have_count(4)
    expect(page.locator("#log-totals dd").first).to_have_text("4")
    # The cost breakdown opens in the full-width row under its row. The filter's change
    # and submit events each send a request: let both answers land before opening a row.
    page.wait_for_load_state("networkidle")
    page.locator(".cost-toggle").first.click()
    expect(page.locator(".cost-toggle").first).to_have_attribute("aria-expanded", "true")
    expect(page.locator("tr.cost-breakdown").first).to_be_visible()
    page.get_by_text(re.compile(r"micro-USD")).first.wait_for()
    # A bad filter answers a message in place, not an error page
    page.get_by_label("IP address", exact=True).fill("not-an-ip")
    page.get_by_role("button", name="Filter").click()
    page.get_by_text("Enter a valid IPv4 or IPv6 address").wait_for()
    # Reloading the URL gives the same filtered page
    page.get_by_label("IP address", exact=True).fill("")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(4)
    page.reload()
    assert page.locator("#log-results tbody tr:not(.cost-breakdown)").count() == 4
    # The charts drew from their JSON, and switching a period redraws
    for chart in ("chart-per-minute", "chart-by-token", "chart-model-cost", "chart-model-requests"):
        page.wait_for_selector(f"#{chart}[data-chart-ready]")
    page.get_by_role("button", name="Last day").click()
    page.wait_for_selector("#chart-per-minute[data-chart-ready]")
