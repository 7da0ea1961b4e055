"""Low-balance and token quota alerts: one email each time a figure falls below the
threshold its customer set.

A fall is decided in the transaction of the debit that causes it, by a conditional
UPDATE that sets `low_balance_alerted_at` (`quota_alerted_at` for a token) only
while it is empty and the new figure is below the threshold: two settlements of
the same account wait on its row lock, and only the first finds it empty. The
settlement statement of `billing.settlement` makes the same decision in its SQL.
The email task is enqueued on commit, never inside the transaction, and claims its
send with a second conditional UPDATE (`..._emailed_at`), so a task delivered twice
sends one email. A credit that brings the balance back to the threshold or above
empties both marks (`low_balance_rearm`): the next fall is told again.
"""

from functools import partial

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from accounts.locale import recipient_locale
from accounts.models import Token
from billing.locks import lock_rows
from billing.models import Account
from core.links import public_url
from core.money import MICRO_PER_USD, format_usd

# The largest threshold a customer may set: far above any real balance worth an alert,
# and small enough that every comparison stays inside the bigint columns.
THRESHOLD_MAX = 1_000_000 * MICRO_PER_USD


def _check_threshold(threshold: int | None) -> None:
    if threshold is not None and not 0 < threshold <= THRESHOLD_MAX:
        raise ValueError("A threshold is a positive amount of micro-USD, at most THRESHOLD_MAX.")


# --- Low balance --------------------------------------------------------------------


def account_low_balance_threshold_set(*, user_id: int, threshold: int | None) -> bool:
    """Set the balance below which the customer is emailed (None: no email); return
    whether the balance is already below it.

    A balance already below a new threshold did not fall: nothing is sent for it now,
    and the alert is armed again by the next credit that brings the balance back.
    """
    _check_threshold(threshold)
    with transaction.atomic():
        lock_rows(accounts=[user_id])
        balance = Account.objects.filter(pk=user_id).values_list("balance", flat=True).get()
        below = threshold is not None and balance < threshold
        changes: dict = {"low_balance_threshold": threshold}
        if below:
            now = timezone.now()
            # An alert already told (or on its way) is kept as it is.
            changes["low_balance_alerted_at"] = Case(
                When(low_balance_alerted_at__isnull=True, then=Value(now)),
                default=F("low_balance_alerted_at"),
            )
            changes["low_balance_emailed_at"] = Case(
                When(low_balance_alerted_at__isnull=True, then=Value(now)),
                default=F("low_balance_emailed_at"),
            )
        else:
            changes["low_balance_alerted_at"] = None
            changes["low_balance_emailed_at"] = None
        Account.objects.filter(pk=user_id).update(**changes)
    return below


def low_balance_claim(*, account_id: int) -> bool:
    """After a debit, in its transaction: record a fall below the threshold and enqueue
    its email on commit; return whether this call recorded it."""
    claimed = Account.objects.filter(
        pk=account_id,
        low_balance_alerted_at__isnull=True,
        balance__lt=F("low_balance_threshold"),
    ).update(low_balance_alerted_at=timezone.now(), low_balance_emailed_at=None)
    if claimed:
        low_balance_email_enqueue(account_ids=[account_id])
    return bool(claimed)


def low_balance_email_enqueue(*, account_ids: list[int]) -> None:
    """Send the low-balance email of these accounts once the caller's transaction commits."""
    from billing.tasks import account_low_balance_email_task

    for account_id in account_ids:
        transaction.on_commit(partial(account_low_balance_email_task.delay, account_id))


def low_balance_rearm(*, account_id: int) -> None:
    """After a credit, in its transaction: arm the alert again if the balance is back
    at the threshold or above."""
    Account.objects.filter(
        pk=account_id,
        low_balance_alerted_at__isnull=False,
        balance__gte=F("low_balance_threshold"),
    ).update(low_balance_alerted_at=None, low_balance_emailed_at=None)


def low_balance_email_send(*, account_id: int) -> bool:
    """Email the customer that their balance fell below their threshold, once per fall;
    return False if nothing was sent (already sent, or the balance came back)."""
    claimed = Account.objects.filter(
        pk=account_id,
        low_balance_threshold__isnull=False,
        low_balance_alerted_at__isnull=False,
        low_balance_emailed_at__isnull=True,
    ).update(low_balance_emailed_at=timezone.now())
    if not claimed:
        return False
    account = Account.objects.select_related("user").get(pk=account_id)
    threshold = account.low_balance_threshold or 0
    context = {
        "balance": format_usd(account.balance),
        "threshold": format_usd(threshold),
        "site_name": settings.COMET_SITE_NAME,
        "recharge_url": public_url(reverse("console:recharge")),
        "profile_url": public_url(reverse("accounts:profile")),
    }
    try:
        with recipient_locale(account.user):
            subject = gettext("Your balance is below %(threshold)s") % {
                "threshold": context["threshold"]
            }
            send_mail(
                subject=f"[{settings.COMET_SITE_NAME}] {subject}",
                message=render_to_string("emails/low_balance.txt", context),
                from_email=None,
                recipient_list=[account.user.email],
            )
    except Exception:
        # Let the retry send it: give the claim back.
        Account.objects.filter(pk=account_id).update(low_balance_emailed_at=None)
        raise
    return True


# --- Token quota ----------------------------------------------------------------------


def token_quota_alert_state(
    *, token: Token, quota_remaining: int | None, threshold: int | None
) -> dict:
    """Return the alert fields of `token` for a new quota and threshold (in its lock).

    Armed when the remaining quota is at the threshold or above; a quota already below
    it did not fall, so nothing is sent (an alert already told is kept as it was).
    """
    _check_threshold(threshold)
    if threshold is None or quota_remaining is None or quota_remaining >= threshold:
        return {
            "quota_alert_threshold": threshold,
            "quota_alerted_at": None,
            "quota_alert_emailed_at": None,
        }
    if token.quota_alerted_at is not None:
        return {
            "quota_alert_threshold": threshold,
            "quota_alerted_at": token.quota_alerted_at,
            "quota_alert_emailed_at": token.quota_alert_emailed_at,
        }
    now = timezone.now()
    return {
        "quota_alert_threshold": threshold,
        "quota_alerted_at": now,
        "quota_alert_emailed_at": now,
    }


def token_quota_alert_claim(*, token_id: int) -> bool:
    """After a token spent, in its transaction: record a fall of its remaining quota
    below its alert threshold and enqueue the email on commit; return whether this
    call recorded it."""
    claimed = Token.objects.filter(
        pk=token_id,
        quota_alerted_at__isnull=True,
        quota_remaining__lt=F("quota_alert_threshold"),
    ).update(quota_alerted_at=timezone.now(), quota_alert_emailed_at=None)
    if claimed:
        token_quota_alert_email_enqueue(token_ids=[token_id])
    return bool(claimed)


def token_quota_alert_email_enqueue(*, token_ids: list[int]) -> None:
    """Send the quota alert of these tokens once the caller's transaction commits."""
    from billing.tasks import token_quota_alert_email_task

    for token_id in token_ids:
        transaction.on_commit(partial(token_quota_alert_email_task.delay, token_id))


def token_quota_alert_email_send(*, token_id: int) -> bool:
    """Email the owner that a token's remaining quota fell below its alert threshold,
    once per fall; return False if nothing was sent."""
    claimed = Token.objects.filter(
        pk=token_id,
        quota_alert_threshold__isnull=False,
        quota_alerted_at__isnull=False,
        quota_alert_emailed_at__isnull=True,
    ).update(quota_alert_emailed_at=timezone.now())
    if not claimed:
        return False
    token = Token.objects.select_related("user").get(pk=token_id)
    context = {
        "token_name": token.name,
        "masked_key": token.masked_key,
        "remaining": format_usd(max(0, token.quota_remaining or 0)),
        "threshold": format_usd(token.quota_alert_threshold or 0),
        "site_name": settings.COMET_SITE_NAME,
        "token_url": public_url(reverse("tokens:edit", args=[token.pk])),
    }
    try:
        with recipient_locale(token.user):
            subject = gettext("Token “%(token)s” has less than %(threshold)s of quota left") % {
                "token": token.name,
                "threshold": context["threshold"],
            }
            send_mail(
                subject=f"[{settings.COMET_SITE_NAME}] {subject}",
                message=render_to_string("emails/token_quota_alert.txt", context),
                from_email=None,
                recipient_list=[token.user.email],
            )
    except Exception:
        Token.objects.filter(pk=token_id).update(quota_alert_emailed_at=None)
        raise
    return True
