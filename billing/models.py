"""Money: one account per user, the append-only ledger, and open reservations.

All amounts are integer micro-USD (1 USD = 1,000,000).
"""

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Account(models.Model):
    """A user's money: balance, what is held for in-flight requests, lifetime totals.

    `balance` only changes through `billing.services` (ledger entries) and
    `billing.metering` (usage), always by conditional UPDATEs, never by
    read-then-write in Python. `reserved` is the sum of open reservations; what a
    user may still spend is `balance - reserved`.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.PROTECT, related_name="account"
    )
    balance = models.BigIntegerField(default=0)
    reserved = models.BigIntegerField(default=0)
    used = models.BigIntegerField(default=0)
    request_count = models.BigIntegerField(default=0)
    recharged = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        permissions = [("adjust_balance", "Can adjust account balances")]
        constraints = [
            models.CheckConstraint(
                condition=Q(reserved__gte=0), name="billing_account_reserved_nonneg"
            ),
            models.CheckConstraint(
                condition=Q(balance__gte=F("reserved")),
                name="billing_account_balance_covers_reserved",
            ),
            models.CheckConstraint(condition=Q(used__gte=0), name="billing_account_used_nonneg"),
        ]

    def __str__(self) -> str:
        return f"account of {self.user_id}"

    @property
    def available(self) -> int:
        return self.balance - self.reserved


class LedgerEntry(models.Model):
    """One change of a balance other than per-request usage: append-only.

    Rows are never updated or deleted: they are the audit trail and, with the
    request log, the proof of every balance (balance = Σ entries - Σ request
    costs since the last usage settlement). A correction is a new entry.
    `idempotency_key` makes each business event (an order, a refund, an admin
    adjustment) land at most once, whichever path reports it.
    """

    class Kind(models.TextChoices):
        RECHARGE = "recharge", "Recharge"
        BONUS = "bonus", "Bonus"
        REDEMPTION = "redemption", "Redemption code"
        ADJUSTMENT = "adjustment", "Adjustment"
        REFUND = "refund", "Refund"
        DISPUTE = "dispute", "Dispute"
        USAGE_SETTLEMENT = "usage_settlement", "Usage settlement"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    amount = models.BigIntegerField(help_text="Signed micro-USD: positive credits the balance.")
    balance_after = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=200, unique=True)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    # For usage settlement entries: the last request log id folded into this entry.
    usage_through_log_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["account", "-id"], name="billing_ledger_account_recent")]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="billing_ledger_amount_nonzero"),
            models.CheckConstraint(
                condition=Q(balance_after__gte=0), name="billing_ledger_balance_after_nonneg"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} ({self.idempotency_key})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValueError("Ledger entries are append-only; record a new entry instead.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ValueError("Ledger entries are append-only and cannot be deleted.")


class Reservation(models.Model):
    """An upper-bound cost held for one in-flight request until it settles.

    An open reservation counts in `Account.reserved` (and `Token.reserved`).
    Settling or releasing closes it exactly once (the status changes by a
    conditional UPDATE); one whose lease expired is released by
    `reservation_release_expired_task`, and closed rows are deleted a day later.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        SETTLED = "settled", "Settled"
        RELEASED = "released", "Released"

    request_id = models.CharField(max_length=64, unique=True)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="reservations")
    token = models.ForeignKey(
        "accounts.Token", null=True, on_delete=models.SET_NULL, related_name="reservations"
    )
    amount = models.BigIntegerField()
    # What this reservation holds against the token's quota: the amount, or 0 when
    # the token had no quota (unlimited tokens are not locked on reserve).
    token_amount = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(
                fields=["expires_at"],
                condition=Q(status="open"),
                name="billing_reservation_open_lease",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="billing_reservation_amount_pos"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} holds {self.amount}"
