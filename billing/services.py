"""Writes to money: accounts, the ledger and the recharge discounts.

Every balance change other than per-request usage (see `billing.settlement`) is
one ledger entry written here, in the same transaction as a conditional UPDATE of
the account row. Rows are locked in one order everywhere -- accounts, tokens,
reservations (`billing.locks`) -- so two transactions never wait on each other in a
cycle.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Sum
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from accounts.locale import recipient_locale, text_for
from accounts.models import User
from billing.alerts import low_balance_claim, low_balance_rearm
from billing.locks import lock_rows
from billing.models import Account, LedgerEntry, RechargeTier, UserDiscount
from core.links import public_url
from core.money import format_owed, usd_to_micro
from logs.selectors import log_last_ids_before, log_retention_cutoff
from logs.services import RETENTION_BATCH_SIZE, log_prune


class LedgerError(Exception):
    """A ledger write that was refused; the message is for a person."""


class InsufficientBalance(LedgerError):
    pass


class IdempotencyConflict(LedgerError):
    pass


def account_create_for_new_user(sender: Any, instance: User, created: bool, **kwargs: Any) -> None:
    """Create the account of a user who was just created (a post_save receiver)."""
    if created and not kwargs.get("raw"):
        Account.objects.get_or_create(user=instance)
        signup_credit = usd_to_micro(settings.COMET_SIGNUP_CREDIT_USD)
        if signup_credit > 0:
            account_credit(
                user_id=instance.pk,
                amount=signup_credit,
                kind=LedgerEntry.Kind.BONUS,
                idempotency_key=f"signup:{instance.pk}",
                reason=text_for(instance.pk, gettext_noop("Welcome credit")),
            )


def _existing_entry(
    *, idempotency_key: str, user_id: int, kind: str, amount: int
) -> LedgerEntry | None:
    entry = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
    if entry is None:
        return None
    if entry.account_id != user_id or entry.kind != kind or entry.amount != amount:
        raise IdempotencyConflict(
            f"The idempotency key “{idempotency_key}” was already used for a different "
            "ledger entry; nothing was changed."
        )
    return entry


def ledger_entry_record(
    *,
    user_id: int,
    kind: str,
    amount: int,
    idempotency_key: str,
    reason: str = "",
    created_by: User | None = None,
    allow_negative: bool = False,
) -> LedgerEntry:
    """Apply a signed `amount` to a balance and record it; return the ledger entry.

    The same idempotency key again returns the first entry without changing
    anything; the same key with a different amount, kind or account raises
    IdempotencyConflict. A debit that would leave less than what open
    reservations hold raises InsufficientBalance, unless `allow_negative` (a
    refund or a lost dispute: the money is gone whatever the balance says).
    """
    if not isinstance(amount, int) or amount == 0:
        raise ValueError("A ledger entry moves a non-zero whole number of micro-USD.")
    if not idempotency_key:
        raise ValueError("A ledger entry needs an idempotency key.")
    existing = _existing_entry(
        idempotency_key=idempotency_key, user_id=user_id, kind=kind, amount=amount
    )
    if existing is not None:
        return existing
    changes: dict[str, Any] = {"balance": F("balance") + amount}
    if kind == LedgerEntry.Kind.RECHARGE:
        changes["recharged"] = F("recharged") + amount
    try:
        with transaction.atomic():
            accounts = Account.objects.filter(pk=user_id)
            if amount < 0 and not allow_negative:
                accounts = accounts.filter(balance__gte=F("reserved") - amount)
            if not accounts.update(**changes):
                if not Account.objects.filter(pk=user_id).exists():
                    raise LedgerError(gettext("This user has no account."))
                raise InsufficientBalance(
                    gettext(
                        "The balance (less what in-flight requests hold) is smaller than "
                        "this debit; nothing was changed."
                    )
                )
            # The UPDATE above holds the row lock until commit: this read is exact.
            balance_after = (
                Account.objects.filter(pk=user_id).values_list("balance", flat=True).get()
            )
            if amount > 0 and balance_after >= 0:
                # Paid back: a later debt is told again.
                Account.objects.filter(pk=user_id, debt_notified_at__isnull=False).update(
                    debt_notified_at=None
                )
            if amount > 0:
                low_balance_rearm(account_id=user_id)
            else:
                low_balance_claim(account_id=user_id)
            return LedgerEntry.objects.create(
                account_id=user_id,
                kind=kind,
                amount=amount,
                balance_after=balance_after,
                idempotency_key=idempotency_key,
                reason=reason,
                created_by=created_by,
            )
    except IntegrityError:
        # A concurrent writer recorded the same key first; its transaction won.
        existing = _existing_entry(
            idempotency_key=idempotency_key, user_id=user_id, kind=kind, amount=amount
        )
        if existing is None:
            raise
        return existing


def account_credit(
    *,
    user_id: int,
    amount: int,
    idempotency_key: str,
    kind: str = LedgerEntry.Kind.RECHARGE,
    reason: str = "",
    created_by: User | None = None,
) -> LedgerEntry:
    """Add `amount` (> 0) micro-USD to a balance, once per idempotency key."""
    if amount <= 0:
        raise ValueError("A credit is a positive amount.")
    return ledger_entry_record(
        user_id=user_id,
        kind=kind,
        amount=amount,
        idempotency_key=idempotency_key,
        reason=reason,
        created_by=created_by,
    )


def account_debit(
    *,
    user_id: int,
    amount: int,
    idempotency_key: str,
    kind: str = LedgerEntry.Kind.REFUND,
    reason: str = "",
    created_by: User | None = None,
    allow_negative: bool = False,
) -> LedgerEntry:
    """Take `amount` (> 0) micro-USD from a balance, once per idempotency key."""
    if amount <= 0:
        raise ValueError("A debit is a positive amount.")
    return ledger_entry_record(
        user_id=user_id,
        kind=kind,
        amount=-amount,
        idempotency_key=idempotency_key,
        reason=reason,
        created_by=created_by,
        allow_negative=allow_negative,
    )


def account_adjust(
    *,
    user_id: int,
    amount: int,
    reason: str,
    created_by: User | None,
    idempotency_key: str | None = None,
) -> LedgerEntry:
    """Correct a balance by a signed amount with a stated reason (support and admins)."""
    if not reason.strip():
        raise LedgerError(gettext("An adjustment needs a reason."))
    return ledger_entry_record(
        user_id=user_id,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        amount=amount,
        idempotency_key=idempotency_key or f"adjust:{uuid.uuid4()}",
        reason=reason.strip(),
        created_by=created_by,
    )


def usage_settlement_record(*, user_id: int, through_log_id: int) -> LedgerEntry | None:
    """Fold the request costs up to `through_log_id` into one usage settlement entry.

    The balance already carries these costs, so the entry does not change it: it
    lets the request log rows it covers be pruned while the books still close.
    Return None when there is nothing new to fold.
    """
    from logs.models import RequestLog

    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=user_id)
        last = account.ledger_entries.filter(kind=LedgerEntry.Kind.USAGE_SETTLEMENT).aggregate(
            through=Max("usage_through_log_id")
        )["through"]
        rows = RequestLog.objects.filter(user_id=user_id, id__lte=through_log_id)
        if last is not None:
            rows = rows.filter(id__gt=last)
        total = rows.aggregate(total=Sum("cost"))["total"] or 0
        if total == 0:
            return None
        return LedgerEntry.objects.create(
            account=account,
            kind=LedgerEntry.Kind.USAGE_SETTLEMENT,
            amount=-total,
            balance_after=account.balance,
            idempotency_key=f"usage:{user_id}:{through_log_id}",
            reason=f"Request costs up to log #{through_log_id}",
            usage_through_log_id=through_log_id,
        )


@dataclass(frozen=True)
class RetentionResult:
    cutoff: datetime
    settled_users: int
    deleted_rows: int
    deleted_rollups: int


def log_retention_run(
    *, now: datetime | None = None, batch_size: int = RETENTION_BATCH_SIZE
) -> RetentionResult:
    """Delete request log rows older than LOG_RETENTION_DAYS, keeping the books closed.

    1. Rollups are written with each row as it settles, so nothing is pending there.
    2. Each user's old rows are folded into one usage settlement ledger entry
       (`usage_settlement_record`), so balances still prove out.
    3. Then `logs` deletes the rows, their minute and hour rollups and old refusal
       counts (`logs.services.log_prune`, in short batches that keep each token's
       pruned usage).
    """
    cutoff = log_retention_cutoff(now=now)
    settled = 0
    for user_id, through in log_last_ids_before(cutoff=cutoff):
        usage_settlement_record(user_id=user_id, through_log_id=through)
        settled += 1
    pruned = log_prune(cutoff=cutoff, batch_size=batch_size)
    return RetentionResult(cutoff, settled, pruned.deleted_rows, pruned.deleted_rollups)


def account_debt_notify(*, account_ids: Iterable[int]) -> None:
    """Email, once, each of these accounts that owes money and was not told yet.

    Called by the settle paths when a request was charged more than its hold; the
    email task claims the account (`account_debt_email_send`) after commit.
    """
    from billing.tasks import account_debt_email_task

    owing = list(
        Account.objects.filter(
            pk__in=list(account_ids), balance__lt=0, debt_notified_at__isnull=True
        ).values_list("pk", flat=True)
    )
    for account_id in owing:
        transaction.on_commit(partial(account_debt_email_task.delay, account_id))


def account_debt_forgive(*, user_id: int, reason: str, created_by: User | None) -> LedgerEntry:
    """Forgive what an account owes, as one audited ledger entry that brings it to zero."""
    if not reason.strip():
        raise LedgerError(gettext("Forgiving a debt needs a reason."))
    with transaction.atomic():
        lock_rows(accounts=[user_id])
        balance = Account.objects.filter(pk=user_id).values_list("balance", flat=True).first()
        if balance is None:
            raise LedgerError(gettext("This user has no account."))
        if balance >= 0:
            raise LedgerError(gettext("This account owes nothing; nothing was changed."))
        return ledger_entry_record(
            user_id=user_id,
            kind=LedgerEntry.Kind.DEBT_FORGIVEN,
            amount=-balance,
            idempotency_key=f"forgive:{uuid.uuid4()}",
            reason=reason.strip(),
            created_by=created_by,
        )


def account_debt_email_send(*, account_id: int) -> bool:
    """Email the "your account owes" notice once; return False if nothing was sent."""
    claimed = Account.objects.filter(
        pk=account_id, balance__lt=0, debt_notified_at__isnull=True
    ).update(debt_notified_at=timezone.now())
    if not claimed:
        return False
    account = Account.objects.select_related("user").get(pk=account_id)
    context = {
        "owed": format_owed(account.owed),
        "site_name": settings.COMET_SITE_NAME,
        "recharge_url": public_url(reverse("console:recharge")),
    }
    try:
        with recipient_locale(account.user):
            subject = gettext("Your account owes %(owed)s") % {"owed": context["owed"]}
            send_mail(
                subject=f"[{settings.COMET_SITE_NAME}] {subject}",
                message=render_to_string("emails/debt.txt", context),
                from_email=None,
                recipient_list=[account.user.email],
            )
    except Exception:
        # Let the retry send it: give the claim back.
        Account.objects.filter(pk=account_id).update(debt_notified_at=None)
        raise
    return True


# --- Recharge discounts -------------------------------------------------------


def recharge_tier_create(*, kind: str, threshold: int, discount_percent: Decimal) -> RechargeTier:
    """Create a discount tier: `threshold` micro-USD of one top-up or of all of them."""
    return RechargeTier.objects.create(
        kind=kind, threshold=threshold, discount_percent=discount_percent
    )


def user_discount_set(*, user: User, discount_percent: Decimal, note: str = "") -> UserDiscount:
    """Give one customer a permanent discount on every top-up (replacing theirs)."""
    discount, _ = UserDiscount.objects.update_or_create(
        user=user, defaults={"discount_percent": discount_percent, "note": note}
    )
    return discount
