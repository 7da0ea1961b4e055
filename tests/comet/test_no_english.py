"""Every page in Chinese has no English left beyond names, code and units (issue: 简体中文).

Each page is rendered with real data (the demo catalog, a month of logs, tokens, orders,
an announcement) for a user whose language is zh-hans, and for a visitor whose browser asks
for Chinese; `english_left` lists visible text and shown attributes with English words.
"""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accounts.models import Token
from announcements.models import Announcement
from billing.log_generator import request_logs_generate
from billing.models import RechargeOrder
from core.money import MICRO_PER_USD as USD
from models_catalog.models import CatalogModel as Model
from models_catalog.models import PricingGroup, Vendor
from tests.comet.english_left import _WORD, english_left
from tests.factories import UserFactory
from tests.tokens.test_views import _signed_in_at
from tokens.services import token_create

CHINESE = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}


@pytest.fixture
def catalog_names(db) -> set[str]:
    """The demo catalog, and the words of its names: data an operator typed, not chrome."""
    call_command("load_demo_catalog", verbosity=0)
    call_command("load_demo_discounts", verbosity=0)
    return _data_words()


def _data_words() -> set[str]:
    names = [
        *Model.objects.values_list("name", flat=True),
        *Vendor.objects.values_list("display_name", flat=True),
        *PricingGroup.objects.values_list("display_name", flat=True),
        *Token.objects.values_list("name", flat=True),
        *UserFactory._meta.model.objects.values_list("email", flat=True),
    ]
    return {word for name in names for word in _WORD.findall(name)}


@pytest.fixture
def chinese_user(catalog_names):
    user = UserFactory(language="zh-hans")
    token_create(user=user, name="生产")
    request_logs_generate(count=300, user=user, days=10, tokens=2, seed=7)
    Announcement.objects.create(
        title="维护通知", body_markdown="凌晨 3 点维护。", published_at=timezone.now()
    )
    for number, paid in (("C0001", True), ("C0002", False)):
        RechargeOrder.objects.create(
            number=number,
            user=user,
            credit=20 * USD,
            currency="usd",
            price_per_usd=1,
            amount_minor=2000,
            paid_at=timezone.now() - timedelta(hours=1) if paid else None,
            status=RechargeOrder.Status.PAID if paid else RechargeOrder.Status.PENDING,
        )
    return user


CONSOLE_PAGES = [
    "console:home",
    "console:recharge",
    "console:logs",
    "console:relay-api",
    "tokens:list",
    "tokens:create",
    "billing:history",
    "billing:orders",
    "announcements",
    "accounts:profile",
    "models_catalog:subscription",
    "pricing",
    "account_email",
    "account_change_password",
    "mfa_index",
]

PUBLIC_PAGES = [
    "pricing",
    "account_login",
    "account_signup",
    "account_reset_password",
    "account_email_verification_sent",
    "announcements",
]


def _left(response, allowed) -> list[str]:
    assert response.status_code == 200, response.status_code
    return english_left(response.content.decode(), allowed | _data_words())


@pytest.mark.parametrize("name", CONSOLE_PAGES)
def test_console_pages_have_no_english_left(client, chinese_user, catalog_names, name):
    client.force_login(chinese_user)
    _signed_in_at(client, chinese_user, seconds_ago=10)  # the token form asks for it
    assert _left(client.get(reverse(name)), catalog_names) == []


def test_order_and_model_pages_have_no_english_left(client, chinese_user, catalog_names):
    client.force_login(chinese_user)
    for url in [
        reverse("billing:order", args=["C0001"]),
        reverse("billing:order", args=["C0002"]),
        reverse("models_catalog:model_detail", args=[Model.objects.order_by("name").first().name]),
        reverse("announcements:detail", args=[Announcement.objects.get().pk]),
    ]:
        assert (url, _left(client.get(url), catalog_names)) == (url, [])


@pytest.mark.parametrize("name", PUBLIC_PAGES)
def test_public_pages_have_no_english_left(client, catalog_names, name):
    assert _left(client.get(reverse(name), **CHINESE), catalog_names) == []


CHART_PAGES = [
    "logs:chart-per-minute",
    "logs:chart-by-model",
    "logs:chart-by-token",
    "logs:chart-errors",
    "logs:chart-home",
]


@pytest.mark.parametrize("name", CHART_PAGES)
def test_chart_labels_are_chinese(client, chinese_user, catalog_names, name):
    """The charts' legends and axis titles come from these answers (static/js/charts.js)."""
    client.force_login(chinese_user)
    data = client.get(reverse(name)).json()
    labels = [dataset["label"] for dataset in data["datasets"]]
    assert labels
    html = "".join(f"<p>{label}</p>" for label in labels)
    assert english_left(html, catalog_names | _data_words()) == []


def test_the_detector_finds_english_and_spares_names_and_code():
    html = (
        '<h1>令牌</h1><p title="Copy">复制 <code>client = OpenAI()</code></p>'
        '<input placeholder="搜索"><span aria-label="Close">&times;</span>'
        "<p>调用 gpt-4o 花费 $0.25 共 1,234 tokens</p><p>Balance: ¥3</p>"
        "<script>const label = 'Spend';</script>"
    )
    assert english_left(html, {"gpt"}) == ["Copy", "Close", "Balance: ¥3"]
