"""The admin in Chinese (issue: 简体中文): every registered model's list, add and change pages,
the index, the custom views and every action's message, for an operator whose language is
zh-hans; the same pages stay in English for an English operator.

Each page is rendered with a row of every model, and `english_left` lists the visible text
and shown attributes that still have English words beyond names, code, units and the data
an operator or a customer typed (emails, model and batch names, request ids, keys).
"""

# ruff: noqa: RUF001  (Chinese punctuation in the expected messages is meant)

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, Token, User
from announcements.models import Announcement
from billing.models import (
    LedgerEntry,
    OrderEvent,
    RechargeOrder,
    RechargeTier,
    RedemptionCode,
    Reservation,
    StripeEvent,
    UserDiscount,
)
from billing.pricing import recharge_settings
from billing.recharge import codes_mint
from billing.services import account_debit
from core.money import MICRO_PER_USD as USD
from logs.models import Refusal, RequestLog
from models_catalog import services as catalog_services
from models_catalog.models import (
    CatalogModel,
    PriceChange,
    PriceChangeBatch,
    PriceChangeEmail,
    PriceChangeSubscription,
    PricingGroup,
    Vendor,
)
from relay.models import Channel
from tests.billing.helpers import fund
from tests.comet.english_left import _WORD, english_left, english_words
from tests.factories import StaffFactory, UserFactory
from tokens.services import token_create

pytestmark = pytest.mark.django_db

HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture
def operator():
    return StaffFactory(email="operator@example.com", language="zh-hans")


@pytest.fixture
def rows(operator):
    """A row of every model the admin shows, made the way the app makes them."""
    customer = UserFactory(email="customer@example.com", display_name="王小明")
    token, _key = token_create(user=customer, name="生产", actor=customer)
    fund(customer, 30 * USD, key="welcome:1")
    account_debit(user_id=customer.pk, amount=50 * USD, kind="adjustment", idempotency_key="debt:1",
                  allow_negative=True)  # fmt: skip
    Reservation.objects.create(
        request_id="grant:7f3a",
        account_id=customer.pk,
        token=token,
        amount=1000,
        expires_at=timezone.now() + timedelta(minutes=1),
    )
    recharge_settings()
    RechargeTier.objects.create(
        kind=RechargeTier.Kind.SINGLE, threshold=100 * USD, discount_percent=5
    )
    UserDiscount.objects.create(user=customer, discount_percent=Decimal(10), note="大客户")
    order = RechargeOrder.objects.create(
        number="C0001",
        user=customer,
        credit=20 * USD,
        currency="usd",
        price_per_usd=1,
        amount_minor=2000,
        paid_at=timezone.now(),
        status=RechargeOrder.Status.NEEDS_ATTENTION,
    )
    OrderEvent.objects.create(order=order, kind="paid", message="pi_123 2000 usd")
    codes_mint(count=2, credit=5 * USD, batch="双十二", expires_at=None, created_by=operator)
    StripeEvent.objects.create(event_id="evt_1", type="checkout.session.completed")
    vendor = Vendor.objects.create(name="openai", display_name="OpenAI")
    model = CatalogModel.objects.create(
        name="gpt-4o-mini", vendor=vendor, model_ratio=Decimal("0.075"), completion_ratio=4
    )
    catalog_services.price_change_record(
        target=model,
        new_prices={"model_ratio": Decimal("0.08")},
        reason="上游调价",
        changed_by=operator,
        source=PriceChange.Source.FORM,
        effective_at=timezone.now() + timedelta(days=2),
    )
    subscription = PriceChangeSubscription.objects.create(user=customer)
    PriceChangeEmail.objects.create(batch=PriceChangeBatch.objects.get(), subscription=subscription)
    Announcement.objects.create(
        title="维护通知", body_markdown="凌晨 3 点维护。", published_at=timezone.now()
    )
    RequestLog.objects.create(
        created_at=timezone.now(),
        request_id="req_1",
        user=customer,
        token=token,
        token_name=token.name,
        model=model.name,
        prompt_tokens=100,
        completion_tokens=20,
        cost=15,
        client_ip="203.0.113.7",
    )
    Refusal.objects.create(
        second=timezone.now().replace(microsecond=0),
        user=customer,
        token=token,
        token_name=token.name,
        status_code=429,
        error_code="rate_limited",
        model=model.name,
        client_ip="203.0.113.7",
    )
    Channel.objects.create(name="主线路", kind=Channel.Kind.MOCK, served_models=[model.name])
    Authenticator.objects.create(user=customer, type=Authenticator.Type.TOTP, data={"secret": "x"})
    Group.objects.create(name="客服")
    return customer


def data_words() -> set[str]:
    """The words of what people typed or the system named: data, not the admin's chrome."""
    values = [
        *EmailAddress.objects.values_list("email", flat=True),
        *Token.objects.values_list("name", "key_prefix", "key_last4"),
        *LedgerEntry.objects.values_list("idempotency_key", flat=True),
        *Reservation.objects.values_list("request_id", flat=True),
        *RedemptionCode.objects.values_list("batch", "code_prefix"),
        *StripeEvent.objects.values_list("event_id", "type"),
        *CatalogModel.objects.values_list("name", flat=True),
        *Vendor.objects.values_list("name", "display_name"),
        *PricingGroup.objects.values_list("name", "display_name"),
        *Refusal.objects.values_list("error_code", flat=True),
        *RequestLog.objects.values_list("request_id", flat=True),
        *OrderEvent.objects.values_list("kind", "message"),
        *AuditEvent.objects.values_list("target_type", "detail"),
        *Channel.objects.values_list("base_url", flat=True),
        # What operators publish (and price changes announce) is content, not chrome.
        *Announcement.objects.values_list("title", "body_markdown"),
        *Authenticator.objects.values_list("data", flat=True),
        # The password box shows the hash's algorithm and salt (test settings hash with md5).
        *(
            part[:show]
            for hashed in User.objects.values_list("password", flat=True)
            for part in hashed.split("$")
            for show in (2, 6)
        ),
    ]
    text = " ".join(str(value) for value in values)
    # An empty JSON field's box reads "null": JSON, as the operator types it.
    return set(_WORD.findall(text)) | {"null"}


def left(response) -> list[str]:
    assert response.status_code == 200, (response.status_code, response.get("Location"))
    return english_left(response.content.decode(), data_words())


def admin_pages(operator) -> list[str]:
    """Every registered model's list, add and change pages, and the index."""
    request = RequestFactory().get("/admin/")
    request.user = operator
    urls = [reverse("admin:index")]
    for model, model_admin in admin.site._registry.items():
        info = model._meta.app_label, model._meta.model_name
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        urls.append(reverse("admin:app_list", args=[info[0]]))
        if model_admin.has_add_permission(request):
            urls.append(reverse("admin:{}_{}_add".format(*info)))
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            urls.append(reverse("admin:{}_{}_change".format(*info), args=[first.pk]))
    return sorted(set(urls))


def test_every_admin_page_is_in_chinese(client, operator, rows):
    client.force_login(operator)
    pages = admin_pages(operator)
    assert len(pages) > 60  # every model: list, app page, add (where allowed), change
    found = {}
    for url in pages:
        response = client.get(url, follow=True)
        if english := left(response):
            found[url] = english
    assert found == {}


@pytest.mark.parametrize(
    "name",
    [
        "admin:billing_redemptioncode_mint",
        "admin:models_catalog_ratio_import",
        "admin:logs_requestlog_changelist",
        "admin:dashboard",
    ],
)
def test_custom_admin_views_are_in_chinese(client, operator, rows, name):
    client.force_login(operator)
    assert left(client.get(reverse(name))) == []


def test_account_views_and_their_messages_are_in_chinese(client, operator, rows):
    client.force_login(operator)
    adjust = reverse("admin:billing_account_adjust", args=[rows.pk])
    forgive = reverse("admin:billing_account_forgive", args=[rows.pk])
    assert left(client.get(adjust)) == []
    assert left(client.get(forgive)) == []

    refused = client.post(adjust, {"amount": "0", "reason": "测试"})
    assert left(refused) == []
    assert "金额不能为零" in refused.content.decode()

    adjusted = client.post(adjust, {"amount": "5", "reason": "补偿"}, follow=True)
    assert chinese_messages(adjusted) == ["已调整 $5.00；余额现为 −$15.00。"]
    forgiven = client.post(forgive, {"reason": "坏账"}, follow=True)
    assert chinese_messages(forgiven) == ["已免除 $15.00；余额现为 $0.00。"]


def chinese_messages(response) -> list[str]:
    """Return the page's messages after checking each is Chinese with no English left."""
    assert response.status_code == 200
    texts = [str(message) for message in response.context["messages"]]
    for text in texts:
        assert HAN.search(text), text
        assert english_words(text, data_words()) == [], text
    return texts


def _action(client, model: str, action: str, pks, **extra):
    return client.post(
        reverse(f"admin:{model}_changelist"),
        {"action": action, "_selected_action": [str(pk) for pk in pks], **extra},
        follow=True,
    )


def test_crediting_an_order_by_hand_asks_and_answers_in_chinese(client, operator, rows):
    client.force_login(operator)
    order = RechargeOrder.objects.get()
    asked = _action(client, "billing_rechargeorder", "credit_by_hand", [order.pk])
    assert left(asked) == []
    assert "手动入账" in asked.content.decode()
    done = _action(
        client, "billing_rechargeorder", "credit_by_hand", [order.pk], apply="1", reason="已核对"
    )
    assert chinese_messages(done) == ["已入账：C0001。"]
    again = _action(
        client, "billing_rechargeorder", "credit_by_hand", [order.pk], apply="1", reason="已核对"
    )
    assert chinese_messages(again) == ["已入账过，未做任何更改：C0001。"]


def test_cancelling_a_scheduled_price_change_says_so_in_chinese(client, operator, rows):
    client.force_login(operator)
    change = PriceChange.objects.get()
    done = _action(client, "models_catalog_pricechange", "cancel_scheduled", [change.pk])
    assert chinese_messages(done) == ["已取消 1 项计划中的价格变更。"]
    assert PriceChange.objects.get().status == PriceChange.Status.CANCELLED


def test_testing_channels_reports_in_chinese(client, operator, rows):
    client.force_login(operator)
    channel = Channel.objects.get()
    [message] = chinese_messages(_action(client, "relay_channel", "test_channels", [channel.pk]))
    assert message.startswith("主线路 在 ")
    assert message.endswith(" 毫秒内响应了 gpt-4o-mini。")
    [message] = chinese_messages(
        client.post(reverse("admin:relay_channel_test", args=[channel.pk]), follow=True)
    )
    assert "毫秒内响应了" in message


def test_exporting_codes_keeps_the_csv_unlocalised(client, operator, rows):
    client.force_login(operator)
    codes = RedemptionCode.objects.all()
    response = _action(client, "billing_redemptioncode", "export_csv", [c.pk for c in codes])
    lines = response.content.decode().splitlines()
    assert lines[0] == "code_prefix,batch,credit_usd,expires_at,state,redeemed_by,redeemed_at"
    assert lines[1].split(",")[4] == "Unused"


def test_minting_codes_is_in_chinese(client, operator, rows):
    client.force_login(operator)
    url = reverse("admin:billing_redemptioncode_mint")
    refused = client.post(url, {"count": "0", "credit_usd": "5", "batch": "新批次"})
    assert left(refused) == []
    minted = client.post(url, {"count": "2", "credit_usd": "5", "batch": "新批次"})
    assert minted.status_code == 201
    codes = set(_WORD.findall(minted.context["codes"]))  # the codes themselves are data
    assert english_left(minted.content.decode(), data_words() | codes) == []
    assert "已在批次“新批次”中生成 2 个兑换码" in minted.content.decode()


def test_deleting_with_the_built_in_action_is_in_chinese(client, operator, rows):
    client.force_login(operator)
    announcement = Announcement.objects.get(title="维护通知")
    asked = _action(client, "announcements_announcement", "delete_selected", [announcement.pk])
    assert left(asked) == []
    done = _action(
        client, "announcements_announcement", "delete_selected", [announcement.pk], post="yes"
    )
    assert chinese_messages(done) == ["成功删除了 1 个 公告"]


def test_a_refused_price_edit_is_explained_in_chinese(client, operator, rows):
    client.force_login(operator)
    model = CatalogModel.objects.get()
    url = reverse("admin:models_catalog_catalogmodel_change", args=[model.pk])
    data = {
        "name": model.name,
        "vendor": model.vendor_id,
        "kind": model.kind,
        "description": "",
        "is_enabled": "on",
        "model_ratio": "0.5",
        "completion_ratio": "4",
        "cached_ratio": "",
        "price_per_call": "",
        "change_reason": "",
        "effective_at_0": "",
        "effective_at_1": "",
        "price_changes-TOTAL_FORMS": "0",
        "price_changes-INITIAL_FORMS": "0",
    }
    response = client.post(url, data)
    assert response.status_code == 200
    assert "请填写价格变更的原因" in response.content.decode()
    assert left(response) == []


def test_an_english_operator_still_reads_english(client, rows):
    operator = StaffFactory(language="en")
    client.force_login(operator)
    index = client.get(reverse("admin:index")).content.decode()
    assert "Comet administration" in index
    assert "Billing" in index
    orders = client.get(reverse("admin:billing_rechargeorder_changelist")).content.decode()
    assert "Credit selected orders by hand" in orders
    assert "Needs attention" in orders
    assert not HAN.search(orders.replace("王小明", "").replace("简体中文", ""))
    change = PriceChange.objects.get()
    done = _action(client, "models_catalog_pricechange", "cancel_scheduled", [change.pk])
    assert [str(m) for m in done.context["messages"]] == ["1 scheduled change cancelled."]
