"""An order left pending says how to reach support, with the number to quote."""

from datetime import timedelta

import pytest
from django.urls import reverse

from billing.models import RechargeOrder
from tests.billing.recharge_helpers import new_order

pytestmark = pytest.mark.django_db


def order_page(client, order: RechargeOrder, **headers) -> str:
    return client.get(reverse("billing:order", args=[order.number]), **headers).content.decode()


def test_a_fresh_pending_order_does_not_mention_support(fake_stripe, user_client, user):
    order = new_order(user)

    assert 'id="order-support"' not in order_page(user_client, order)


def test_an_order_pending_for_ten_minutes_shows_support_and_its_number(
    fake_stripe, user_client, user
):
    order = new_order(user)
    RechargeOrder.objects.filter(pk=order.pk).update(
        created_at=order.created_at - timedelta(minutes=10)
    )

    # The full page and the status part htmx polls both say it.
    for page in (
        order_page(user_client, order),
        order_page(user_client, order, HTTP_HX_REQUEST="true"),
    ):
        assert "Still waiting after 10 minutes?" in page
        assert '<a href="mailto:support@example.com">support@example.com</a>' in page
        assert f"quote order <strong>{order.number}</strong>" in page


def test_an_order_needing_attention_links_to_support(fake_stripe, user_client, user):
    order = new_order(user)
    RechargeOrder.objects.filter(pk=order.pk).update(status=RechargeOrder.Status.NEEDS_ATTENTION)

    page = order_page(user_client, order)

    assert "Still waiting" not in page
    assert '<a href="mailto:support@example.com">support@example.com</a>' in page
    assert f"quote order <strong>{order.number}</strong>" in page
