# ruff: noqa: RUF001 (Chinese text is written with its full-width punctuation)
"""A price-change batch emails each subscriber in their own language: one batch, each
language rendered once, subject, text and HTML translated."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from models_catalog import emails, services
from models_catalog.models import PriceChange, PriceChangeBatch, PriceChangeEmail
from models_catalog.tasks import price_change_batches_close_task
from tests.comet.english_left import english_left, english_words

pytestmark = pytest.mark.django_db


def test_one_batch_emails_an_english_and_a_chinese_subscriber_each_in_their_language(
    catalog, admin_user, subscribe, monkeypatch
):
    english = subscribe("all", language="en")
    chinese = subscribe("all", language="zh-hans")
    other_chinese = subscribe("all", language="zh-hans")
    no_choice = subscribe("all", language="")
    services.price_change_record(
        target=catalog["gpt-4o"],
        new_prices={"model_ratio": Decimal("1.5")},
        reason="上游涨价",
        changed_by=admin_user,
        source=PriceChange.Source.FORM,
    )
    PriceChangeBatch.objects.update(closes_at=timezone.now() - timedelta(seconds=1))
    rendered_in = []
    render = emails.render_changes

    def counting_render(changes, language="en", zone=None):
        rendered_in.append(language)
        return render(changes, language, zone)

    monkeypatch.setattr(emails, "render_changes", counting_render)

    assert price_change_batches_close_task() == 1

    assert PriceChangeBatch.objects.count() == 1
    assert PriceChangeEmail.objects.filter(status="sent").count() == 4
    # Each language once for the batch, not once per subscriber.
    assert sorted(rendered_in) == ["en", "zh-hans"]
    sent = {message.to[0]: message for message in mail.outbox}
    assert len(sent) == len(mail.outbox) == 4

    for person in (english, no_choice):
        message = sent[person.user.email]
        html, _mimetype = message.alternatives[0]
        assert message.subject == "[Comet] Price changes for 1 model"
        assert "Prices are changing on Comet for models you follow." in message.body
        assert "Input / 1M tokens: $2.50 -> $3.00" in message.body
        assert "Unsubscribe with one click: " in message.body
        assert '<html lang="en">' in html
        assert ">Before<" in html

    for person in (chinese, other_chinese):
        message = sent[person.user.email]
        html, _mimetype = message.alternatives[0]
        assert message.subject == "[Comet] 1 个模型的价格调整"
        assert "Comet 上你关注的模型价格即将调整。" in message.body
        assert "输入 / 1M tokens: $2.50 -> $3.00" in message.body
        assert "原因： 上游涨价" in message.body
        assert '<html lang="zh-hans">' in html
        assert ">调整前<" in html
        assert ">调整后<" in html
        assert "一键退订" in html
        assert english_words(f"{message.subject}\n{message.body}", {"gpt"}) == []
        assert english_left(html, {"gpt"}) == []
    # The personal link stays personal when the rendering is shared.
    assert emails.unsubscribe_url(chinese.pk) in sent[chinese.user.email].body
    assert emails.unsubscribe_url(other_chinese.pk) in sent[other_chinese.user.email].body


def test_a_group_change_names_the_group_in_the_subscribers_language(catalog, admin_user, subscribe):
    from models_catalog.models import PricingGroup

    default = PricingGroup.objects.get(is_default=True)
    chinese = subscribe("all", language="zh-hans")
    services.price_change_record(
        target=default,
        new_prices={"group_ratio": Decimal("1.2")},
        reason="调整",
        changed_by=admin_user,
        source=PriceChange.Source.FORM,
    )
    PriceChangeBatch.objects.update(closes_at=timezone.now() - timedelta(seconds=1))
    price_change_batches_close_task()
    [message] = [m for m in mail.outbox if m.to == [chinese.user.email]]
    assert f"分组 {default.name}" in message.body
    assert "分组倍率: x1 -> x1.2" in message.body
