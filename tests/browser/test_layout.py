"""The data pages fit the screen: a laptop shows the columns that matter, a phone shows cards.

Logs, pricing, orders and billing history are seeded with realistic rows, then looked
at 1280 x 900 and 390 x 844: the document is never wider than the window, no table is
clipped or scrolled sideways, and the columns a customer reads first are on screen.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import RechargeOrder
from billing.services import account_adjust
from models_catalog.demo_catalog import load_demo_catalog
from models_catalog.pricing import Rates, request_cost
from tests.billing.recharge_helpers import new_order
from tests.factories import StaffFactory, UserFactory
from tests.logs.helpers import funded_user_with_token, settle

from .conftest import SCREENSHOTS, SIZES, look, resize, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DATA_PAGES = {
    "logs": "/logs/",
    "pricing": "/pricing",
    "orders": "/billing/orders/",
    "history": "/billing/history/",
}

# Everything a table could hide: the document's width, and per table whether its
# box scrolls sideways and whether any of its cells lies outside the window.
MEASURE = """() => {
  const width = window.innerWidth;
  const tables = [...document.querySelectorAll("main table")].map((table) => {
    let scrolled = false;
    for (let box = table; box && box !== document.body; box = box.parentElement) {
      if (box.scrollWidth > box.clientWidth + 1 && getComputedStyle(box).overflowX !== "visible") {
        scrolled = true;
      }
    }
    // On a phone the header row is left for screen readers only, in a 1 px box.
    const cells = [...table.querySelectorAll("th, td")].filter((cell) => {
      const head = cell.closest("thead");
      return !head || head.getBoundingClientRect().width > 1;
    });
    const outside = cells.filter((cell) => {
      const box = cell.getBoundingClientRect();
      return box.width > 0 && (box.left < -1 || box.right > width + 1);
    }).map((cell) => cell.textContent.trim().slice(0, 40));
    return { id: table.id || table.className, scrolled, outside };
  });
  // The elements that stick out, to name in a failure.
  const wide = [...document.querySelectorAll("body *")].filter(
    (element) => element.getBoundingClientRect().right > width + 1
  ).slice(0, 5).map((element) => element.tagName + "." + element.className);
  return { scrollWidth: document.documentElement.scrollWidth, width, tables, wide };
}"""


def seed_customer():
    """A customer with a month of varied requests, orders in every state and a ledger."""
    user = UserFactory(email="ada.lovelace@analytical-engines.example")
    laptop = funded_user_with_token(user, name="laptop", amount=250_000_000)
    ci = funded_user_with_token(user, name="ci-pipeline-production", amount=1_000_000)
    now = timezone.now()
    models = [
        ("gpt-4o-mini", Decimal("0.075"), Decimal(4)),
        ("claude-3-5-sonnet-20241022", Decimal("1.5"), Decimal(5)),
        ("deepseek-chat", Decimal("0.135"), Decimal(2)),
        ("text-embedding-3-large", Decimal("0.065"), Decimal(1)),
    ]
    for index in range(30):
        name, ratio, completion = models[index % len(models)]
        failed = index % 7 == 3  # refused before reaching a model: nothing to bill
        prompt = 0 if failed else 1_200 + index * 3_517
        answer = 0 if failed or name.startswith("text-embedding") else 310 + index * 211
        cost = 0
        if not failed:
            cost = request_cost(
                Rates(model_ratio=ratio, completion_ratio=completion),
                prompt_tokens=prompt,
                completion_tokens=answer,
            )
        settle(
            (laptop, ci)[index % 2],
            cost=cost,
            created_at=now - timedelta(minutes=index * 47 + 2),
            model=name,
            model_ratio=ratio,
            completion_ratio=completion,
            client_ip=("198.51.100.23", "2001:db8:85a3::8a2e:370:7334")[index % 5 == 4],
            prompt_tokens=prompt,
            completion_tokens=answer,
            status_code=429 if failed else 200,
            error_code="rate_limited" if failed else "",
            latency_ms=850 + index * 613,
            first_token_ms=(240 + index * 17) if index % 3 else None,
            is_stream=bool(index % 3),
        )
    for credit, status in [
        (10_000_000, RechargeOrder.Status.CREDITED),
        (250_000_000, RechargeOrder.Status.CREDITED),
        (1_000_000_000, RechargeOrder.Status.NEEDS_ATTENTION),
        (25_000_000, RechargeOrder.Status.EXPIRED),
        (50_000_000, RechargeOrder.Status.PENDING),
    ]:
        order = new_order(user, credit=credit)
        RechargeOrder.objects.filter(pk=order.pk).update(status=status)
    account_adjust(
        user_id=user.pk,
        amount=-3_141_593,
        reason="Refund of a duplicate charge reversed after review by support",
        created_by=StaffFactory(),
    )
    return user


@pytest.fixture
def customer():
    load_demo_catalog()
    return seed_customer()


def inside_the_window(page, locator) -> bool:
    """Whether the element is shown and wholly inside the window's width."""
    if not locator.is_visible():
        return False
    box = locator.bounding_box()
    width = page.viewport_size["width"]
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


def test_data_pages_fit_a_laptop_and_a_phone(page, customer):
    sign_in(page, customer)
    for size in SIZES:
        resize(page, size)
        for name, url in DATA_PAGES.items():
            page.goto(url)
            page.wait_for_load_state("networkidle")
            look(page, f"{name}-{size}")
            found = page.evaluate(MEASURE)
            assert found["scrollWidth"] <= found["width"], (name, size, found)
            assert found["tables"], (name, size)
            for table in found["tables"]:
                assert not table["scrolled"], (name, size, table)
                assert table["outside"] == [], (name, size, table)


def test_a_laptop_shows_the_columns_that_matter(page, customer):
    sign_in(page, customer)
    resize(page, "desktop")
    page.goto("/logs/")
    logs = page.locator("#log-results table")
    columns = ["Time", "Token", "Model", "Prompt", "Completion", "Cost", "Status", "Latency"]
    for column in columns:
        header = logs.get_by_role("columnheader", name=column, exact=True)
        assert inside_the_window(page, header), column
    first = logs.locator("tbody tr:not(.cost-breakdown)").first
    for cell in first.locator("td").all():
        assert inside_the_window(page, cell), cell.inner_text()

    page.goto("/pricing")
    pricing = page.locator("#pricing-table table")
    for column in ["Input / 1M", "Output / 1M", "Context", "History"]:
        header = pricing.get_by_role("columnheader", name=column, exact=True)
        assert inside_the_window(page, header), column
    # With the raw multipliers too, nothing leaves the window.
    page.get_by_label("Show raw multipliers").check()
    pricing.get_by_role("columnheader", name="Model ratio").wait_for()
    found = page.evaluate(MEASURE)
    assert found["scrollWidth"] <= found["width"], found
    assert all(table["outside"] == [] for table in found["tables"]), found


def test_a_phone_shows_each_request_as_a_card_with_its_cost(page, customer):
    sign_in(page, customer)
    resize(page, "phone")
    page.goto("/logs/")
    card = page.locator("#log-results tbody tr:not(.cost-breakdown)").first
    cost = card.locator("td.log-cost")
    assert inside_the_window(page, cost)
    assert cost.inner_text().startswith("$")
    label = cost.evaluate("(cell) => getComputedStyle(cell, '::before').content")
    assert label == '"Cost"'  # each fact of a card shows its column's name
    for label in ["Time", "Token", "Model", "Status", "Latency"]:
        assert inside_the_window(page, card.locator(f'td[data-label="{label}"]')), label

    # The breakdown opens below the card, as wide as the card, and closes again.
    toggle = cost.get_by_role("button")
    toggle.click()
    breakdown = page.locator("tr.cost-breakdown").first
    assert inside_the_window(page, breakdown)
    below, above = breakdown.bounding_box(), card.bounding_box()
    assert below["width"] >= above["width"] - 1
    assert below["y"] >= above["y"] + above["height"] - 1
    assert "micro-USD" in breakdown.inner_text()
    look(page, "logs-breakdown-phone")
    toggle.press("Enter")
    assert not breakdown.is_visible()


def test_a_laptop_opens_the_cost_breakdown_across_the_table(page, customer):
    sign_in(page, customer)
    resize(page, "desktop")
    page.goto("/logs/")
    table = page.locator("#log-results table")
    page.locator(".cost-toggle").nth(1).click()
    breakdown = page.locator("tr.cost-breakdown").nth(1)
    assert inside_the_window(page, breakdown)
    assert breakdown.bounding_box()["width"] >= table.bounding_box()["width"] - 4
    assert "micro-USD" in breakdown.inner_text()
    page.screenshot(path=f"{SCREENSHOTS}/logs-breakdown-desktop.png")
