"""Low-balance and token quota emails: one per fall below the customer's threshold,
against PostgreSQL (the settlement statement), Redis and the email outbox."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery.exceptions import Retry
from django.core import mail
from django.db import connection
from django.urls import reverse

from accounts.models import Token
from billing.alerts import (
    account_low_balance_threshold_set,
    low_balance_email_send,
    token_quota_alert_email_send,
)
from billing.models import Account
from billing.services import account_adjust, account_credit, account_debit
from billing.settlement import Settlement, settle_many
from tests.billing.helpers import LOG, books_snapshot, fund, hold, make_token, spend
from tests.factories import UserFactory
from tokens.services import token_create, token_update

pytestmark = pytest.mark.django_db

DOLLAR = 1_000_000


@pytest.fixture
def emails_sent(django_capture_on_commit_callbacks):
    """Run the callbacks each money transaction left for after its commit (the email task,
    eager in the suite), as a committed transaction would."""

    def run(action):
        with django_capture_on_commit_callbacks(execute=True):
            return action()

    return run


def _alerting_account(*, balance: int, threshold: int):
    user = UserFactory()
    fund(user, balance)
    account_low_balance_threshold_set(user_id=user.pk, threshold=threshold)
    token, _ = make_token(user)
    return user, token


def _low_balance_emails() -> list:
    return [message for message in mail.outbox if "balance is below" in message.subject]


@pytest.mark.parametrize("one_statement", [True, False], ids=["statement", "orm"])
def test_falling_below_the_threshold_sends_one_email(emails_sent, monkeypatch, one_statement):
    # Given $10 and a $5 threshold, settled by the batch statement or by the ORM
    monkeypatch.setattr("billing.settlement.uses_one_statement", lambda: one_statement)
    user, token = _alerting_account(balance=10 * DOLLAR, threshold=5 * DOLLAR)

    # When spending leaves $6, then exactly $5 (at the threshold is not below it)
    emails_sent(lambda: spend(token, cost=4 * DOLLAR))
    emails_sent(lambda: spend(token, cost=1 * DOLLAR))
    # Then nothing is sent
    assert mail.outbox == []

    # When one more cent takes it below
    emails_sent(lambda: spend(token, cost=10_000))

    # Then one email says so, with the balance and the threshold
    [message] = mail.outbox
    assert message.to == [user.email]
    assert "$5.00" in message.subject
    assert "$4.99" in message.body
    assert "/recharge/" in message.body
    account = Account.objects.get(pk=user.pk)
    assert account.low_balance_alerted_at is not None
    assert account.low_balance_emailed_at is not None


def test_spending_further_below_sends_nothing_more(emails_sent):
    user, token = _alerting_account(balance=10 * DOLLAR, threshold=5 * DOLLAR)
    emails_sent(lambda: spend(token, cost=6 * DOLLAR))
    assert len(mail.outbox) == 1

    # When 16 more requests spend below the threshold, down to nothing
    for _ in range(16):
        emails_sent(lambda: spend(token, cost=250_000))

    # Then no other email is sent
    assert len(mail.outbox) == 1
    assert Account.objects.get(pk=user.pk).balance == 0


def test_a_credit_back_to_the_threshold_arms_it_again(emails_sent):
    user, token = _alerting_account(balance=10 * DOLLAR, threshold=5 * DOLLAR)
    emails_sent(lambda: spend(token, cost=6 * DOLLAR))  # $4: first email

    # A top-up that leaves it still below does not arm it again
    emails_sent(lambda: fund(user, 500_000, key="small"))  # $4.50
    emails_sent(lambda: spend(token, cost=100_000))
    assert len(_low_balance_emails()) == 1

    # A recharge to the threshold or above does
    emails_sent(
        lambda: account_credit(user_id=user.pk, amount=DOLLAR, idempotency_key="order:T1")
    )  # $5.40
    account = Account.objects.get(pk=user.pk)
    assert (account.low_balance_alerted_at, account.low_balance_emailed_at) == (None, None)
    emails_sent(lambda: spend(token, cost=500_000))  # $4.90: the second fall

    assert len(_low_balance_emails()) == 2


def test_a_redemption_or_an_admin_credit_arms_it_again_and_a_debit_can_cross(emails_sent):
    staff = UserFactory(is_staff=True)
    user, token = _alerting_account(balance=10 * DOLLAR, threshold=5 * DOLLAR)

    # An admin's negative adjustment is a fall too
    emails_sent(
        lambda: account_adjust(user_id=user.pk, amount=-6 * DOLLAR, reason="fix", created_by=staff)
    )
    assert len(_low_balance_emails()) == 1
    # A refund below it sends nothing more
    emails_sent(
        lambda: account_debit(user_id=user.pk, amount=DOLLAR, idempotency_key="refund:re_1")
    )
    assert len(_low_balance_emails()) == 1

    # An admin credit back above arms it; the next request below sends the second email
    emails_sent(
        lambda: account_adjust(
            user_id=user.pk, amount=5 * DOLLAR, reason="goodwill", created_by=staff
        )
    )
    emails_sent(lambda: spend(token, cost=4 * DOLLAR))  # $8, then $4
    assert len(_low_balance_emails()) == 2


def test_no_threshold_no_email_and_a_threshold_already_above_the_balance_waits(emails_sent):
    user = UserFactory()
    fund(user, 10 * DOLLAR)
    token, _ = make_token(user)
    emails_sent(lambda: spend(token, cost=9 * DOLLAR))
    assert mail.outbox == []

    # A threshold set above the balance ($1 left) is not a fall: nothing is sent now...
    assert account_low_balance_threshold_set(user_id=user.pk, threshold=5 * DOLLAR) is True
    emails_sent(lambda: spend(token, cost=100_000))
    assert mail.outbox == []
    # ...and once a top-up brings it back, the next fall is emailed
    emails_sent(lambda: fund(user, 10 * DOLLAR, key="top-up"))
    emails_sent(lambda: spend(token, cost=7 * DOLLAR))
    assert len(mail.outbox) == 1


def test_the_email_task_delivered_twice_sends_once(emails_sent):
    user, token = _alerting_account(balance=10 * DOLLAR, threshold=5 * DOLLAR)
    emails_sent(lambda: spend(token, cost=6 * DOLLAR))

    # A redelivery of the task (acks_late, a worker lost after sending) finds it sent
    assert low_balance_email_send(account_id=user.pk) is False
    assert len(mail.outbox) == 1


def test_a_failed_send_gives_the_claim_back_for_the_retry(emails_sent, monkeypatch):
    user, token = _alerting_account(balance=10 * DOLLAR, threshold=5 * DOLLAR)

    def refuse(*args, **kwargs):
        raise OSError("SMTP down")

    monkeypatch.setattr("billing.alerts.send_mail", refuse)
    # The eager task asks Celery for a retry (a worker would retry it with backoff)
    with pytest.raises(Retry):
        emails_sent(lambda: spend(token, cost=6 * DOLLAR))
    # The request was charged all the same; the retry sends the email
    assert Account.objects.get(pk=user.pk).balance == 4 * DOLLAR
    monkeypatch.undo()
    assert low_balance_email_send(account_id=user.pk) is True
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_settlements_below_the_threshold_send_exactly_one_email():
    # Given $10, a $5 threshold, and 8 requests held on their own grants
    user = UserFactory()
    fund(user, 10 * DOLLAR)
    account_low_balance_threshold_set(user_id=user.pk, threshold=5 * DOLLAR)
    token, _ = make_token(user)
    grants = [hold(token, DOLLAR) for _ in range(8)]
    barrier = threading.Barrier(len(grants))

    def settle(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            settle_many(
                [
                    Settlement(
                        grant_id=grants[index],
                        request_id=f"race-{index}",
                        cost=DOLLAR,
                        log=LOG,
                    )
                ],
                lease_seconds=60,
            )
        finally:
            connection.close()

    # When they settle at once, each a committed transaction, four of them below $5
    with ThreadPoolExecutor(max_workers=len(grants)) as pool:
        list(pool.map(settle, range(len(grants))))

    # Then exactly one email was sent
    assert Account.objects.get(pk=user.pk).balance == 2 * DOLLAR
    assert len(_low_balance_emails()) == 1


# --- The profile's form ------------------------------------------------------------


def test_the_profile_sets_and_clears_the_threshold(user, user_client):
    fund(user, 20 * DOLLAR)
    page = user_client.get(reverse("accounts:profile")).content.decode()
    assert 'id="low-balance-alert"' in page

    response = user_client.post(
        reverse("billing:low-balance-alert"), {"threshold": "$1,000.50"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert Account.objects.get(pk=user.pk).low_balance_threshold == 1_000_500_000
    assert "already below" in response.content.decode()

    response = user_client.post(reverse("billing:low-balance-alert"), {"threshold": "10"})
    assert response.status_code == 302
    assert Account.objects.get(pk=user.pk).low_balance_threshold == 10 * DOLLAR
    assert 'value="10.00"' in user_client.get(reverse("accounts:profile")).content.decode()

    user_client.post(reverse("billing:low-balance-alert"), {"threshold": ""})
    assert Account.objects.get(pk=user.pk).low_balance_threshold is None


@pytest.mark.parametrize(
    "threshold",
    [
        "-5",
        "0",
        "1\x002",
        "\x00",
        "1e9",
        "inf",
        "nan",
        "٣",
        "\uff15",  # a fullwidth 5
        "²",
        "1000000.01",
        "9" * 19,
        "9" * 5000,
        "1.005",
        "ten",
        "1 2",
    ],
)
def test_a_hostile_threshold_is_a_form_error_and_changes_nothing(user, user_client, threshold):
    fund(user, 20 * DOLLAR)
    account_low_balance_threshold_set(user_id=user.pk, threshold=3 * DOLLAR)
    before = books_snapshot()

    response = user_client.post(
        reverse("billing:low-balance-alert"), {"threshold": threshold}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 400
    assert 'class="field-error"' in response.content.decode()
    assert books_snapshot() == before
    assert Account.objects.get(pk=user.pk).low_balance_threshold == 3 * DOLLAR


def test_the_form_needs_a_signed_in_customer_and_a_post(client, user_client):
    assert client.post(reverse("billing:low-balance-alert"), {"threshold": "5"}).status_code == 302
    assert user_client.get(reverse("billing:low-balance-alert")).status_code == 405


# --- Languages ---------------------------------------------------------------------------


def test_a_chinese_customer_gets_the_email_in_chinese(emails_sent):
    user, token = _alerting_account(balance=10 * DOLLAR, threshold=5 * DOLLAR)
    user.language = "zh-hans"
    user.save(update_fields=["language"])

    emails_sent(lambda: spend(token, cost=6 * DOLLAR))

    [message] = mail.outbox
    assert "余额" in message.subject
    assert "$5.00" in message.subject
    assert "充值" in message.body
    assert "Your balance" not in message.body


# --- Token quota alerts ----------------------------------------------------------------


def _token_emails() -> list:
    return [message for message in mail.outbox if "quota" in message.subject]


@pytest.mark.parametrize("one_statement", [True, False], ids=["statement", "orm"])
def test_a_token_quota_falling_below_its_alert_sends_one_email(
    emails_sent, monkeypatch, one_statement
):
    monkeypatch.setattr("billing.settlement.uses_one_statement", lambda: one_statement)
    user = UserFactory()
    fund(user, 100 * DOLLAR)
    token, _ = token_create(
        user=user, name="ci", quota_remaining=10 * DOLLAR, quota_alert_threshold=2 * DOLLAR
    )

    emails_sent(lambda: spend(token, cost=8 * DOLLAR))  # $2 left: not below
    assert mail.outbox == []
    emails_sent(lambda: spend(token, cost=500_000))  # $1.50 left
    emails_sent(lambda: spend(token, cost=500_000))  # $1 left: still the one email

    [message] = _token_emails()
    assert message.to == [user.email]
    assert "“ci”" in message.subject
    assert "$1.50" in message.body
    assert f"/tokens/{token.pk}/edit/" in message.body
    assert token_quota_alert_email_send(token_id=token.pk) is False


def test_raising_the_quota_arms_the_token_alert_again(emails_sent):
    user = UserFactory()
    fund(user, 100 * DOLLAR)
    token, _ = token_create(
        user=user, name="ci", quota_remaining=5 * DOLLAR, quota_alert_threshold=2 * DOLLAR
    )
    emails_sent(lambda: spend(token, cost=4 * DOLLAR))
    assert len(_token_emails()) == 1

    token.refresh_from_db()
    arguments = {
        "name": token.name,
        "expires_at": None,
        "allowed_models": [],
        "allowed_networks": [],
        "concurrency_limit": token.concurrency_limit,
        "rpm_limit": None,
        "quota_alert_threshold": 2 * DOLLAR,
    }
    # Saving other settings with the quota still below keeps it told
    token = token_update(token=token, quota_remaining=token.quota_remaining, **arguments)
    assert token.quota_alerted_at is not None
    emails_sent(lambda: spend(token, cost=100_000))
    assert len(_token_emails()) == 1

    # Raising the quota to $10 arms it; the next fall is emailed
    token = token_update(token=token, quota_remaining=10 * DOLLAR, **arguments)
    assert token.quota_alerted_at is None
    emails_sent(lambda: spend(token, cost=9 * DOLLAR))
    assert len(_token_emails()) == 2


def test_an_unlimited_token_never_alerts(emails_sent):
    user = UserFactory()
    fund(user, 100 * DOLLAR)
    token, _ = make_token(user)
    Token.objects.filter(pk=token.pk).update(quota_alert_threshold=DOLLAR)
    emails_sent(lambda: spend(token, cost=50 * DOLLAR))
    assert _token_emails() == []


def test_the_token_form_sets_the_alert(user, user_client):
    fund(user, 20 * DOLLAR)
    token, _ = make_token(user, quota=10 * DOLLAR)
    form = {
        "name": "ci",
        "quota": "10",
        "quota_alert": "2.50",
        "concurrency_limit": "100",
    }
    response = user_client.post(reverse("tokens:edit", args=[token.pk]), form)
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.quota_alert_threshold == 2_500_000
    assert (
        'value="2.50"' in user_client.get(reverse("tokens:edit", args=[token.pk])).content.decode()
    )


@pytest.mark.parametrize(
    ("quota", "alert"),
    [("", "2"), ("10", "10"), ("10", "-1"), ("10", "٢"), ("10", "1\x00"), ("10", "9" * 40)],
)
def test_a_token_alert_without_a_quota_or_not_below_it_is_refused(user, user_client, quota, alert):
    fund(user, 20 * DOLLAR)
    token, _ = make_token(user, quota=10 * DOLLAR)
    before = books_snapshot()
    form = {"name": "ci", "quota": quota, "quota_alert": alert, "concurrency_limit": "100"}

    response = user_client.post(reverse("tokens:edit", args=[token.pk]), form)

    assert response.status_code == 400
    assert response.context["form"].errors["quota_alert"]
    assert books_snapshot() == before
    token.refresh_from_db()
    assert token.quota_alert_threshold is None


def test_a_chinese_customer_gets_the_token_alert_in_chinese(emails_sent):
    user = UserFactory(language="zh-hans")
    fund(user, 100 * DOLLAR)
    token, _ = token_create(
        user=user, name="ci", quota_remaining=10 * DOLLAR, quota_alert_threshold=2 * DOLLAR
    )

    emails_sent(lambda: spend(token, cost=9 * DOLLAR))

    [message] = mail.outbox
    assert "令牌“ci”的剩余额度已不足 $2.00" in message.subject
    assert "额度" in message.body
    assert "quota" not in message.body


@pytest.mark.parametrize("alert", ["-1", "0", "1e-9", "ten", "٣", "\uff15", "9" * 30])
def test_the_api_refuses_a_hostile_token_alert(user, user_client, alert):
    fund(user, 20 * DOLLAR)
    token, _ = make_token(user, quota=10 * DOLLAR)
    before = books_snapshot()

    response = user_client.patch(
        f"/api/tokens/{token.pk}/",
        {"quota_alert_threshold": alert},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert books_snapshot() == before
    token.refresh_from_db()
    assert token.quota_alert_threshold is None


def test_the_api_sets_a_token_alert_and_drops_it_with_the_quota(user, user_client):
    fund(user, 20 * DOLLAR)
    token, _ = make_token(user, quota=10 * DOLLAR)
    url = f"/api/tokens/{token.pk}/"

    response = user_client.patch(
        url, {"quota_alert_threshold": "2.5"}, content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["quota_alert_threshold"] == "2.500000"
    # An unlimited token has no quota alert
    response = user_client.patch(url, {"quota_remaining": None}, content_type="application/json")
    assert response.status_code == 200
    assert response.json()["quota_alert_threshold"] is None
    response = user_client.patch(
        url, {"quota_alert_threshold": "1"}, content_type="application/json"
    )
    assert response.status_code == 400
