# ruff: noqa: RUF001 (Chinese text is written with its full-width punctuation)
"""Every email goes out in its recipient's language: their saved one, else English; at
sign-up the page's language becomes the saved one (README, "Languages")."""

import re

import pytest
from django.core import mail
from django.urls import reverse

from accounts.models import User
from billing.models import Account, RechargeOrder
from billing.recharge import order_credit, orders_needing_notice
from billing.services import account_debt_email_send
from billing.tasks import order_receipt_send_task, orders_attention_email_task
from logs.models import RequestLog
from logs.services import new_ip_email_send
from tests.billing.recharge_helpers import new_order
from tests.comet.english_left import english_words
from tests.factories import StaffFactory, UserFactory
from tests.logs.helpers import funded_user_with_token, settle

pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "a-Long-and-unusual-passphrase-42"


def only_chinese(message) -> None:
    """The subject and body have no English beyond names, units, addresses and code."""
    assert english_words(f"{message.subject}\n{message.body}", set()) == [], message.body


@pytest.fixture
def english():
    return UserFactory(language="en")


@pytest.fixture
def chinese():
    return UserFactory(language="zh-hans")


def test_the_debt_email_is_in_each_users_language(english, chinese):
    Account.objects.filter(pk__in=[english.pk, chinese.pk]).update(balance=-1_250_000)
    assert account_debt_email_send(account_id=english.pk)
    assert account_debt_email_send(account_id=chinese.pk)
    en, zh = mail.outbox
    assert en.subject == "[Comet] Your account owes $1.25"
    assert "your account\nnow owes $1.25" in en.body
    assert zh.to == [chinese.email]
    assert zh.subject == "[Comet] 你的账户欠费 $1.25"
    assert "账户现欠费 $1.25" in zh.body
    assert "充值：" in zh.body
    only_chinese(zh)


def test_the_receipt_is_in_each_users_language(fake_stripe, english, chinese):
    staff = StaffFactory()
    for person in (english, chinese):
        order = new_order(person)
        order_credit(order_id=order.pk, actor=staff, reason="Checked in Stripe")
        order_receipt_send_task(order.pk)
    en, zh = mail.outbox
    english_order, chinese_order = RechargeOrder.objects.order_by("pk")
    assert en.subject == f"[Comet] Receipt for order {english_order.number}"
    assert "Your top-up is credited. Thank you." in en.body
    assert zh.subject == f"[Comet] 订单 {chinese_order.number} 的收据"
    assert "你的充值已到账，感谢支持。" in zh.body
    assert "到账额度： $10.00" in zh.body
    only_chinese(zh)


def test_the_new_ip_email_is_in_each_users_language(english, chinese):
    for person in (english, chinese):
        person.notify_new_ip = True
        person.save(update_fields=["notify_new_ip"])
        token = funded_user_with_token(person, name="laptop")
        settle(token, client_ip="203.0.113.7")
        request_id = settle(token, client_ip="198.51.100.99")
        assert new_ip_email_send(log_id=RequestLog.objects.get(request_id=request_id).pk)
    en, zh = mail.outbox
    assert en.subject == "[Comet] Token “laptop” used from a new IP address (198.51.100.99)"
    assert "If not, your key may have leaked" in en.body
    assert zh.subject == "[Comet] 令牌“laptop”在新的 IP 地址（198.51.100.99）上被使用"
    assert "你的密钥可能已泄露" in zh.body
    assert "“新 IP 地址时发邮件提醒我”" in zh.body
    english_words_left = english_words(
        f"{zh.subject}\n{zh.body}", {"laptop", "user", "gpt", "o-mini"}
    )
    assert english_words_left == [], zh.body


def test_the_orders_attention_email_goes_to_each_staff_member_in_their_language(
    fake_stripe, user, client
):
    from datetime import timedelta

    from django.utils import timezone

    from billing.recharge import orders_sweep
    from tests.billing.helpers import post_webhook
    from tests.billing.stripe_fake import event, session_object

    english_staff = StaffFactory(email="ops@example.com", language="en")
    chinese_staff = StaffFactory(email="yunying@example.com", language="zh-hans")
    order = new_order(user)
    assert post_webhook(client, event("checkout.session.completed", session_object(order))) == 200
    RechargeOrder.objects.filter(pk=order.pk).update(
        paid_at=timezone.now() - timedelta(minutes=10, seconds=1)
    )
    orders_sweep()
    orders_attention_email_task(orders_needing_notice())
    by_to = {message.to[0]: message for message in mail.outbox}
    assert len(mail.outbox) == 2
    en, zh = by_to[english_staff.email], by_to[chinese_staff.email]
    assert en.subject == "[Comet] 1 recharge order needs attention"
    assert en.body.startswith("These orders need a person")
    assert order.number in en.body
    assert zh.subject == "[Comet] 1 个充值订单需要处理"
    assert zh.body.startswith("以下订单需要人工处理")
    assert order.number in zh.body
    assert "请先在 Stripe 核对付款，再手动处理：" in zh.body


def sign_up(client, email, **headers):
    return client.post(
        reverse("account_signup"),
        {"email": email, "password1": STRONG_PASSWORD, "password2": STRONG_PASSWORD},
        **headers,
    )


def test_signing_up_in_chinese_saves_chinese_and_the_verification_email_is_chinese(client):
    client.post(reverse("set_language"), {"language": "zh-hans", "next": "/"})
    response = sign_up(client, "xiaoming@example.com")
    assert response.status_code == 302
    user = User.objects.get(email="xiaoming@example.com")
    assert user.language == "zh-hans"
    [email] = mail.outbox
    assert email.subject == "[Comet] 验证你的邮箱地址"
    assert "Comet 向你问好" in email.body
    assert "/accounts/confirm-email/" in email.body
    only_chinese(email)


def test_a_browser_asking_for_chinese_signs_up_in_chinese(client):
    sign_up(client, "li@example.com", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9,en;q=0.8")
    assert User.objects.get(email="li@example.com").language == "zh-hans"
    assert mail.outbox[0].subject == "[Comet] 验证你的邮箱地址"


def test_signing_up_in_english_saves_english_and_the_email_is_english(client):
    sign_up(client, "sam@example.com", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert User.objects.get(email="sam@example.com").language == "en"
    [email] = mail.outbox
    assert email.subject == "[Comet] Confirm your email address"
    assert "Someone signed up for Comet" in email.body


def test_a_password_reset_email_is_in_the_users_saved_language_not_the_pages(
    client, english, chinese
):
    # Asked for from a page in English: each email still follows its user.
    for person in (english, chinese):
        response = client.post(
            reverse("account_reset_password"),
            {"email": person.email},
            HTTP_ACCEPT_LANGUAGE="en",
        )
        assert response.status_code == 302
    en, zh = mail.outbox
    assert en.subject == "[Comet] Reset your password"
    assert zh.to == [chinese.email]
    assert zh.subject == "[Comet] 重置密码"
    assert re.search(r"/accounts/password/reset/key/\S+", zh.body)
    only_chinese(zh)


def test_a_password_reset_for_an_unknown_address_follows_the_page(client):
    client.post(
        reverse("account_reset_password"),
        {"email": "nobody@example.com"},
        HTTP_ACCEPT_LANGUAGE="zh-CN",
    )
    [email] = mail.outbox
    assert email.to == ["nobody@example.com"]
    assert re.search(r"[\u4e00-\u9fff]", email.subject), email.subject
