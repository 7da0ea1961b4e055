"""The recharge pages, the return page, the sweeper, emails, codes and the admin."""

import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.models import LedgerEntry, OrderEvent, RechargeOrder
from billing.recharge import (
    codes_mint,
    order_credit,
    orders_needing_notice,
    orders_sweep,
)
from billing.tasks import orders_attention_email_task, recharge_orders_sweep_task
from tests.billing.helpers import books_snapshot, post_webhook
from tests.billing.recharge_helpers import balance_of, credits_of, new_order
from tests.billing.stripe_fake import event, session_object
from tests.factories import StaffFactory, UserFactory

Status = RechargeOrder.Status
USD = 1_000_000


def test_without_stripe_keys_the_page_says_payment_is_off_and_codes_still_work(
    user_client, user, settings
):
    settings.STRIPE_SECRET_KEY = ""
    page = user_client.get(reverse("console:recharge"))
    assert page.status_code == 200
    assert "Card payments are not set up on this server" in page.content.decode()
    assert 'id="redeem-form"' in page.content.decode()
    response = user_client.post(reverse("billing:recharge-checkout"), {"amount": "20"})
    assert response.status_code == 302
    assert response["Location"] == reverse("console:recharge") + "?amount=20"
    assert not RechargeOrder.objects.exists()
    [minted] = codes_mint(count=1, credit=3 * USD, batch="launch", expires_at=None, created_by=None)
    response = user_client.post(reverse("billing:redeem"), {"code": minted.code.lower()})
    assert response.status_code == 302
    assert balance_of(user) == 3 * USD


def test_recharge_page_shows_presets_and_the_price_of_the_first(fake_stripe, user_client):
    page = user_client.get(reverse("console:recharge")).content.decode()
    assert 'data-value="10"><span class="money">$10.00</span></button>' in page
    assert 'id="quote-charge">$10.00<' in page
    assert "1–3 minutes" in page  # noqa: RUF001
    assert "10 minutes" in page


def test_return_page_asks_stripe_marks_paid_and_follows_to_credited(
    fake_stripe, user_client, user, django_capture_on_commit_callbacks
):
    response = user_client.post(reverse("billing:recharge-checkout"), {"amount": "25"})
    order = RechargeOrder.objects.get()
    assert response.status_code == 303
    page = user_client.get(reverse("billing:order", args=[order.number]), {"returned": 1})
    assert "Waiting for the payment" in page.content.decode()
    assert 'hx-trigger="every 2s"' in page.content.decode()
    fake_stripe.pay(order.stripe_session_id)
    # Stripe is asked at most every STRIPE_ASK_INTERVAL_SECONDS per order: a poll
    # right away does not ask again; one after the interval (its mark gone) does.
    poll = user_client.get(reverse("billing:order", args=[order.number]), HTTP_HX_REQUEST="true")
    assert "Waiting for the payment" in poll.content.decode()
    cache.delete(f"billing:order-asked:{order.pk}")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        poll = user_client.get(
            reverse("billing:order", args=[order.number]), HTTP_HX_REQUEST="true"
        )
    # Paid, the credit task queued but not run yet (the hold delay): "crediting".
    assert "Payment received — crediting" in poll.content.decode()
    assert 'hx-trigger="every 2s"' in poll.content.decode()
    assert "<html" not in poll.content.decode()
    order.refresh_from_db()
    assert order.status == Status.PAID
    assert order.events.filter(kind="paid", message__contains="return page").exists()
    assert balance_of(user) == 0
    with django_capture_on_commit_callbacks(execute=True):
        for callback in callbacks:
            callback()
    # The webhook arrives too: still one credit.
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            post_webhook(Client(), event("checkout.session.completed", session_object(order)))
            == 200
        )
    poll = user_client.get(reverse("billing:order", args=[order.number]), HTTP_HX_REQUEST="true")
    assert 'Credited: <span class="money">$25.00</span>' in poll.content.decode()
    assert "hx-trigger" not in poll.content.decode()
    assert len(credits_of(order)) == 1
    assert balance_of(user) == 25 * USD
    [receipt] = mail.outbox
    assert order.number in receipt.body
    assert receipt.to == [user.email]
    assert f"{settings.COMET_PUBLIC_URL}/billing/orders/" in receipt.body


def test_receipt_is_sent_once(fake_stripe, user, django_capture_on_commit_callbacks):
    from billing.tasks import order_receipt_send_task

    order = new_order(user)
    with django_capture_on_commit_callbacks(execute=True):
        order_credit(order_id=order.pk, actor=StaffFactory(), reason="Checked in Stripe")
    order_receipt_send_task(order.pk)
    assert len(mail.outbox) == 1


def test_order_history_is_all_time_paginated_and_private(fake_stripe, user_client, user):
    old = new_order(user)
    RechargeOrder.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=800))
    for _ in range(30):
        new_order(user)
    other = new_order(UserFactory())
    first = user_client.get(reverse("billing:orders")).content.decode()
    assert "Page 1 of 2" in first
    last = user_client.get(reverse("billing:orders"), {"page": 2}).content.decode()
    assert old.number in last
    assert other.number not in first + last
    assert user_client.get(reverse("billing:order", args=[other.number])).status_code == 404
    detail = user_client.get(reverse("billing:order", args=[old.number])).content.decode()
    assert "Order created." in detail  # the timeline


def test_sweeper_credits_a_paid_order_whose_task_was_lost(fake_stripe, user, client):
    order = new_order(user)
    # The webhook commits but its credit task never runs (no on_commit execution).
    assert post_webhook(client, event("checkout.session.completed", session_object(order))) == 200
    order.refresh_from_db()
    assert order.status == Status.PAID
    RechargeOrder.objects.filter(pk=order.pk).update(paid_at=timezone.now() - timedelta(minutes=1))
    assert recharge_orders_sweep_task() == 1
    order.refresh_from_db()
    assert order.status == Status.CREDITED
    assert recharge_orders_sweep_task() == 0
    assert len(credits_of(order)) == 1


def test_an_order_uncredited_ten_minutes_after_payment_needs_attention_and_admins_are_told_once(
    fake_stripe, user, client
):
    admin = StaffFactory(email="ops@example.com")
    order = new_order(user)
    assert post_webhook(client, event("checkout.session.completed", session_object(order))) == 200
    RechargeOrder.objects.filter(pk=order.pk).update(
        paid_at=timezone.now() - timedelta(minutes=10, seconds=1)
    )
    assert orders_sweep() == [order.pk]
    order.refresh_from_db()
    assert order.status == Status.NEEDS_ATTENTION
    notice = orders_needing_notice()
    assert notice == [order.pk]
    orders_attention_email_task(notice)
    assert orders_needing_notice() == []
    [email] = mail.outbox
    assert email.to == [admin.email]
    assert order.number in email.body
    # Still credited automatically once a credit gets through; it keeps its flag history.
    assert order_credit(order_id=order.pk) is True
    order.refresh_from_db()
    assert order.status == Status.CREDITED
    assert order.events.filter(kind="late").count() == 1


def test_an_order_not_yet_ten_minutes_late_is_left_alone(fake_stripe, user, client):
    order = new_order(user)
    assert post_webhook(client, event("checkout.session.completed", session_object(order))) == 200
    RechargeOrder.objects.filter(pk=order.pk).update(
        paid_at=timezone.now() - timedelta(minutes=9, seconds=50)
    )
    orders_sweep()
    order.refresh_from_db()
    assert order.status == Status.PAID


def test_admin_credits_by_hand_with_a_reason_and_the_webhook_then_changes_nothing(
    fake_stripe, client, user, django_capture_on_commit_callbacks
):
    admin = StaffFactory()
    order = new_order(user)
    client.force_login(admin)
    changelist = reverse("admin:billing_rechargeorder_changelist")
    ask = client.post(changelist, {"action": "credit_by_hand", "_selected_action": [order.pk]})
    assert ask.status_code == 200
    assert "Credit by hand" in ask.content.decode()
    no_reason = client.post(
        changelist,
        {"action": "credit_by_hand", "_selected_action": [order.pk], "apply": "1", "reason": ""},
    )
    assert no_reason.status_code == 200
    assert credits_of(order) == []
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(
            changelist,
            {
                "action": "credit_by_hand",
                "_selected_action": [order.pk],
                "apply": "1",
                "reason": "Paid by bank transfer, checked",
            },
        )
    assert done.status_code == 302
    [entry] = credits_of(order)
    assert entry.created_by == admin
    assert "Paid by bank transfer" in entry.reason
    assert OrderEvent.objects.get(order=order, kind="credited_by_hand").actor == admin
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            post_webhook(Client(), event("checkout.session.completed", session_object(order)))
            == 200
        )
    assert len(credits_of(order)) == 1
    order.refresh_from_db()
    assert order.status == Status.CREDITED
    assert balance_of(user) == order.credit
    attention = client.get(changelist, {"attention": "yes"})
    assert attention.status_code == 200


def test_crediting_by_hand_needs_its_own_permission(fake_stripe, client, user):
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_rechargeorder"))
    order = new_order(user)
    client.force_login(viewer)
    before = books_snapshot()
    changelist = reverse("admin:billing_rechargeorder_changelist")
    page = client.get(changelist)
    assert page.status_code == 200
    assert "credit_by_hand" not in page.content.decode()
    client.post(
        changelist,
        {
            "action": "credit_by_hand",
            "_selected_action": [order.pk],
            "apply": "1",
            "reason": "please",
        },
    )
    assert books_snapshot() == before
    assert credits_of(order) == []


@pytest.mark.django_db(transaction=True)
def test_admin_credit_racing_the_webhook_credits_once_in_fifty_rounds(fake_stripe):
    user = UserFactory()
    admin = StaffFactory()
    rounds = 50
    for _ in range(rounds):
        order = new_order(user, credit=USD)
        payload = event("checkout.session.completed", session_object(order))
        barrier = threading.Barrier(2)
        results: list[object] = []

        def by_admin(order_id=order.pk, barrier=barrier, results=results):
            try:
                barrier.wait()
                results.append(order_credit(order_id=order_id, actor=admin, reason="race"))
            finally:
                connection.close()

        def by_webhook(payload=payload, barrier=barrier, results=results):
            try:
                barrier.wait()
                results.append(post_webhook(Client(), payload))
            finally:
                connection.close()

        threads = [threading.Thread(target=by_admin), threading.Thread(target=by_webhook)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert 200 in results
        assert len(credits_of(order)) == 1
    assert balance_of(user) == rounds * USD
    assert LedgerEntry.objects.filter(kind="recharge").count() == rounds


def test_order_pages_query_count_is_pinned(
    fake_stripe, user_client, user, django_assert_max_num_queries
):
    orders = [new_order(user) for _ in range(30)]
    user_client.get(reverse("console:recharge"))  # creates the settings row once
    with django_assert_max_num_queries(8):
        assert user_client.get(reverse("billing:orders")).status_code == 200
    with django_assert_max_num_queries(12):
        assert user_client.get(reverse("console:recharge")).status_code == 200
    with django_assert_max_num_queries(10):
        page = user_client.get(reverse("billing:order", args=[orders[0].number]))
        assert page.status_code == 200
