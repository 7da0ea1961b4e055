"""The console's flash messages and form errors in Chinese (issue: 简体中文).

Each message a console action flashes, and each error a console form (tokens, recharge,
redemption codes, log filters, price-change emails, profile) gives, is shown in Chinese to a
user whose language is zh-hans, with no English left but names, code and units; an English
user reads the same messages in English.
"""

# ruff: noqa: RUF001  (Chinese punctuation in the expected texts is meant)

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Token
from billing.models import RedemptionCode
from billing.recharge import codes_mint
from core.money import MICRO_PER_USD as USD
from tests.comet.english_left import _WORD, english_words
from tests.factories import UserFactory
from tests.tokens.test_views import _create_form, _signed_in_at
from tokens.services import TOKENS_PER_USER, token_create

pytestmark = pytest.mark.django_db

HAN = re.compile(r"[\u4e00-\u9fff]")
ERRORS = re.compile(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', re.S)


@pytest.fixture
def chinese(client):
    user = UserFactory(language="zh-hans")
    client.force_login(user)
    _signed_in_at(client, user, seconds_ago=10)  # the token form asks for a recent sign-in
    client.user = user
    return client


@pytest.fixture
def english(client):
    user = UserFactory(language="en")
    client.force_login(user)
    _signed_in_at(client, user, seconds_ago=10)
    client.user = user
    return client


def flashed(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def form_errors(response) -> list[str]:
    """Return the text of every error list on the page."""
    html = response.content.decode()
    return [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", item)).strip()
        for block in ERRORS.findall(html)
        for item in re.findall(r"<li>(.*?)</li>", block, re.S)
    ]


def in_chinese(texts: list[str], *, data: str = "") -> list[str]:
    """Check each text is Chinese with no English left (beyond `data`'s words); return them."""
    assert texts, "a message was shown"
    allowed = set(_WORD.findall(data))
    for text in texts:
        assert HAN.search(text), text
        assert english_words(text, allowed) == [], text
    return texts


# --- Flash messages ---------------------------------------------------------------------


def test_token_messages(chinese):
    token, _key = token_create(user=chinese.user, name="生产")
    edit = {**_create_form(chinese.user), "name": "生产"}
    saved = chinese.post(reverse("tokens:edit", args=[token.pk]), edit, follow=True)
    assert in_chinese(flashed(saved)) == ["令牌“生产”已保存。"]
    toggled = chinese.post(reverse("tokens:toggle", args=[token.pk]), follow=True)
    assert "已停用" in in_chinese(flashed(toggled))[0]
    toggled = chinese.post(reverse("tokens:toggle", args=[token.pk]), follow=True)
    assert "已启用" in in_chinese(flashed(toggled))[0]
    deleted = chinese.post(reverse("tokens:delete", args=[token.pk]), follow=True)
    assert "已删除" in in_chinese(flashed(deleted))[0]


def test_a_redeemed_code_is_announced_in_chinese(chinese):
    [minted] = codes_mint(count=1, credit=5 * USD, batch="b", expires_at=None, created_by=None)
    response = chinese.post(reverse("billing:redeem"), {"code": minted.code}, follow=True)
    assert in_chinese(flashed(response)) == ["兑换成功：已入账 $5.00。"]


def test_payments_off_is_said_in_chinese(chinese, settings):
    settings.STRIPE_SECRET_KEY = ""
    response = chinese.post(reverse("billing:recharge-checkout"), {"amount": "20"}, follow=True)
    in_chinese(flashed(response))


def test_price_change_email_messages(chinese):
    saved = chinese.post(reverse("models_catalog:subscription"), {"scope": "all"}, follow=True)
    assert in_chinese(flashed(saved)) == ["价格变动邮件：已保存。"]
    stopped = chinese.post(
        reverse("models_catalog:subscription"), {"unsubscribe": "1"}, follow=True
    )
    in_chinese(flashed(stopped))


def test_the_language_message(chinese):
    response = chinese.post(reverse("accounts:language"), {"language": "zh-hans"}, follow=True)
    assert in_chinese(flashed(response)) == ["语言已保存。"]


# --- Form errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": ""}, "该字段是必填项。"),
        ({"quota": "5000000000"}, "金额最多为 $1,000,000,000。"),
        ({"allowed_networks": "10.0.0.300"}, "“10.0.0.300”不是 IP 地址或 CIDR 网段。"),
        ({"concurrency_limit": "0"}, None),
        ({"form_nonce": "forged"}, None),
    ],
)
def test_token_form_errors(chinese, changes, expected):
    response = chinese.post(reverse("tokens:create"), _create_form(chinese.user, **changes))
    assert response.status_code == 400
    errors = in_chinese(form_errors(response), data="10.0.0.300 CIDR")
    if expected:
        assert expected in errors


def test_the_token_limit_is_explained_in_chinese(chinese):
    for number in range(TOKENS_PER_USER):
        Token.objects.create(
            user=chinese.user,
            name=f"t{number}",
            key_hash=f"{number:064}",
            key_prefix="sk-",
            key_last4="0000",
        )
    response = chinese.post(reverse("tokens:create"), _create_form(chinese.user))
    assert response.status_code == 400
    assert (
        f"你已有 {TOKENS_PER_USER} 个令牌，这是每个账户的上限。"
        in in_chinese(form_errors(response))[0]
    )


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("abc", "请输入美元金额，例如 25 或 25.50。"),
        ("-5", "金额必须大于零。"),
        ("99999999", "单次充值最多 $10,000.00。"),
        ("10.005", "金额精确到美分：最多 2 位小数。"),
        ("1", "单次充值最少 $5.00。"),
    ],
)
def test_recharge_amount_errors(chinese, settings, amount, expected):
    settings.STRIPE_SECRET_KEY = "sk_test_x"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_x"
    response = chinese.post(reverse("billing:recharge-checkout"), {"amount": amount})
    assert response.status_code == 400
    assert expected in in_chinese(form_errors(response))


def test_redemption_code_errors(chinese):
    [used, expired] = codes_mint(
        count=2, credit=5 * USD, batch="b", expires_at=None, created_by=None
    )
    chinese.post(reverse("billing:redeem"), {"code": used.code})
    RedemptionCode.objects.filter(pk=expired.row.pk).update(
        expires_at=timezone.now() - timedelta(days=1)
    )
    for code, expected in [
        ("NOPE-NOPE-NOPE-NOPE", "兑换码不存在。请检查后重试。"),
        (used.code, "此兑换码已被兑换。"),
        (expired.code, "此兑换码已过期。"),
    ]:
        response = chinese.post(reverse("billing:redeem"), {"code": code})
        assert response.status_code == 400
        assert in_chinese(form_errors(response)) == [expected]
    for _attempt in range(20):
        response = chinese.post(reverse("billing:redeem"), {"code": "NOPE"})
    assert response.status_code == 429
    assert "过去一小时内尝试的兑换码太多；请稍后再试。" in in_chinese(form_errors(response))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"range": "2y"}, "请选择时间范围：1h、24h、7d、30d 或自定义。"),
        ({"range": "custom", "start": "yesterday"}, None),
        ({"ip": "999.1.1.1"}, "请输入有效的 IPv4 或 IPv6 地址，例如 203.0.113.7。"),
        ({"token": "abc"}, "“abc”不是令牌 ID：请选择你的一个令牌。"),
        ({"token": "999999"}, "你没有 ID 为 999999 的令牌：请选择你的一个令牌。"),
        ({"status": "teapot"}, None),
        ({"range": "custom"}, "自定义范围需要填写开始日期和时间。"),
        (
            {"range": "custom", "start": "2026-12-01T15:00", "end": "2026-12-01T14:00"},
            "范围的结束时间必须晚于开始时间。",
        ),
        ({"range": "custom", "start": "2001-01-01T00:00"}, None),
        ({"range": "custom", "start": "2026-12-01T00:00", "end": "2099-01-01T00:00"}, None),
        ({"cursor": "forged"}, "此分页链接无效（可能来自其他筛选条件）；请从第一页重新开始。"),
    ],
)
def test_log_filter_errors(chinese, query, expected):
    response = chinese.get(reverse("console:logs"), query)
    assert response.status_code == 400
    errors = in_chinese(form_errors(response), data="ok error refused HTTP abc teapot")
    if expected:
        assert any(expected in error for error in errors), errors


def test_the_price_email_form_errors(chinese):
    response = chinese.post(reverse("models_catalog:subscription"), {"scope": "vendors"})
    assert response.status_code == 400
    assert "请至少选择一个厂商。" in "".join(in_chinese(form_errors(response)))


# --- English stays English ---------------------------------------------------------------


def test_an_english_user_reads_english(english, settings):
    token, _key = token_create(user=english.user, name="prod")
    edit = {**_create_form(english.user), "name": "prod"}
    saved = english.post(reverse("tokens:edit", args=[token.pk]), edit, follow=True)
    assert flashed(saved) == ["Token “prod” saved."]
    settings.STRIPE_SECRET_KEY = "sk_test_x"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_x"
    response = english.post(reverse("billing:recharge-checkout"), {"amount": "1"})
    assert "The smallest top-up is $5.00." in form_errors(response)
    response = english.get(reverse("console:logs"), {"ip": "999.1.1.1"})
    assert any("Enter a valid IPv4 or IPv6 address" in error for error in form_errors(response))
    response = english.post(reverse("billing:redeem"), {"code": "NOPE-NOPE"})
    assert form_errors(response) == ["This code does not exist. Check it and try again."]
