"""Money: one account per user, the append-only ledger, and open reservations.

All amounts are integer micro-USD (1 USD = 1,000,000).
"""

from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core.money import format_usd_exact


class Account(models.Model):
    """A user's money: balance, what is held for in-flight requests, lifetime totals.

    `balance` only changes through `billing.services` (ledger entries) and
    `billing.settlement` (usage), by conditional UPDATEs or under
    the row locks of `billing.locks`, never by read-then-write in Python.
    `reserved` is the sum of open reservations; what a user may still spend is
    `balance - reserved`. The balance may go below zero: an answered request is
    charged its whole cost even when that is more than its hold and the free
    balance covered, and a refund or a lost payment dispute takes back money
    already spent. A balance below zero is owed: new requests are refused until a
    top-up or a code pays it back, the customer is emailed once
    (`debt_notified_at`), and only an admin may forgive it, as a ledger entry.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        primary_key=True,
        on_delete=models.PROTECT,
        related_name="account",
    )
    balance = models.BigIntegerField(_("balance"), default=0)
    reserved = models.BigIntegerField(_("reserved"), default=0)
    used = models.BigIntegerField(_("used"), default=0)
    request_count = models.BigIntegerField(_("request count"), default=0)
    recharged = models.BigIntegerField(_("recharged"), default=0)
    # A payment dispute freezes the account: reservations are refused until it closes.
    is_frozen = models.BooleanField(_("is frozen"), default=False)
    frozen_reason = models.CharField(_("frozen reason"), max_length=200, blank=True)
    # When the customer was told the account owes money; cleared once it is paid back.
    debt_notified_at = models.DateTimeField(_("debt notified at"), null=True, blank=True)
    # The low-balance email (`billing.alerts`): the customer's threshold (micro-USD, empty:
    # off); when the balance last fell below it (empty: armed, the next fall is told);
    # when that fall's email was sent. A credit that brings the balance back to the
    # threshold or above empties both, so each fall below it is told once.
    low_balance_threshold = models.BigIntegerField(
        _("low balance threshold"), null=True, blank=True
    )
    low_balance_alerted_at = models.DateTimeField(
        _("low balance alerted at"), null=True, blank=True
    )
    low_balance_emailed_at = models.DateTimeField(
        _("low balance emailed at"), null=True, blank=True
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("account")
        verbose_name_plural = _("accounts")
        permissions = [("adjust_balance", "Can adjust account balances")]
        constraints = [
            models.CheckConstraint(
                condition=Q(reserved__gte=0), name="billing_account_reserved_nonneg"
            ),
            models.CheckConstraint(condition=Q(used__gte=0), name="billing_account_used_nonneg"),
            models.CheckConstraint(
                condition=Q(low_balance_threshold__isnull=True) | Q(low_balance_threshold__gt=0),
                name="billing_account_low_balance_threshold_pos",
            ),
        ]

    def __str__(self) -> str:
        return gettext("account of %(user)s") % {"user": self.user_id}

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    @property
    def owed(self) -> int:
        """What the account owes (micro-USD): a balance below zero, else 0."""
        return max(0, -self.balance)


class SpendReport(Account):
    """Accounts by daily spend and lifetime recharge: the admin's report (read-only).

    A proxy of `Account` so the report is a changelist of its own (sorting, search,
    paging); its figures come from the account days (`billing.selectors`).
    """

    class Meta:
        proxy = True
        verbose_name = _("spend report")
        verbose_name_plural = _("spend report")


class LedgerEntry(models.Model):
    """One change of a balance other than per-request usage: append-only.

    Rows are never updated or deleted: they are the audit trail and, with the
    request log, the proof of every balance (balance = Σ entries - Σ request
    costs since the last usage settlement). A correction is a new entry.
    `idempotency_key` makes each business event (an order, a refund, an admin
    adjustment) land at most once, whichever path reports it.
    """

    class Kind(models.TextChoices):
        RECHARGE = "recharge", _("Recharge")
        BONUS = "bonus", _("Bonus")
        REDEMPTION = "redemption", _("Redemption code")
        ADJUSTMENT = "adjustment", _("Adjustment")
        REFUND = "refund", _("Refund")
        DISPUTE = "dispute", _("Dispute")
        USAGE_SETTLEMENT = "usage_settlement", _("Usage settlement")
        DEBT_FORGIVEN = "debt_forgiven", _("Debt forgiven")

    account = models.ForeignKey(
        Account, verbose_name=_("account"), on_delete=models.PROTECT, related_name="ledger_entries"
    )
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    amount = models.BigIntegerField(
        _("amount"), help_text=_("Signed micro-USD: positive credits the balance.")
    )
    balance_after = models.BigIntegerField(_("balance after"))
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, unique=True)
    reason = models.TextField(_("reason"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    # For usage settlement entries: the last request log id folded into this entry.
    usage_through_log_id = models.BigIntegerField(_("usage through log id"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("ledger entry")
        ordering = ["-created_at", "-id"]
        verbose_name_plural = _("ledger entries")
        indexes = [models.Index(fields=["account", "-id"], name="billing_ledger_account_recent")]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="billing_ledger_amount_nonzero"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {format_usd_exact(self.amount)} ({self.idempotency_key})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValueError("Ledger entries are append-only; record a new entry instead.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ValueError("Ledger entries are append-only and cannot be deleted.")


class Reservation(models.Model):
    """Money held out of an account's free balance: a relay process's credit grant.

    An open reservation counts in `Account.reserved` (and `Token.reserved` when
    `token_amount` is not 0); its `amount` is what it still holds. A grant
    (`billing.grants`, request id `grant:<hex>`) is released exactly once (the
    status changes under the row locks of `billing.locks`); one whose lease
    passed is released by `grant_release_expired_task`, and closed rows are
    deleted a day later. `settled` is kept for the rows of the per-request
    reservations Comet made before grants were its one engine.
    """

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        SETTLED = "settled", _("Settled")
        RELEASED = "released", _("Released")

    request_id = models.CharField(_("request id"), max_length=64, unique=True)
    account = models.ForeignKey(
        Account, verbose_name=_("account"), on_delete=models.PROTECT, related_name="reservations"
    )
    token = models.ForeignKey(
        "accounts.Token",
        verbose_name=_("token"),
        null=True,
        on_delete=models.SET_NULL,
        related_name="reservations",
    )
    amount = models.BigIntegerField(_("amount"))
    # What this reservation holds against the token's quota: the amount, or 0 when
    # the token had no quota (unlimited tokens are not locked on reserve).
    token_amount = models.BigIntegerField(_("token amount"), default=0)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.OPEN
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires at"))

    class Meta:
        verbose_name = _("reservation")
        verbose_name_plural = _("reservations")
        indexes = [
            models.Index(
                fields=["expires_at"],
                condition=Q(status="open"),
                name="billing_reservation_open_lease",
            ),
        ]
        constraints = [
            # A credit grant (billing.grants) spent to the last micro-USD holds 0.
            models.CheckConstraint(
                condition=Q(amount__gte=0), name="billing_reservation_amount_nonneg"
            ),
        ]

    def __str__(self) -> str:
        return gettext("%(request)s holds %(amount)s") % {
            "request": self.request_id,
            "amount": format_usd_exact(self.amount),
        }


class RechargeSettings(models.Model):
    """The one row of recharge settings admins edit (primary key 1).

    Credit is bought in USD-equivalent units; `price_per_usd` is what $1 of credit
    costs in the payment currency before any discount.
    """

    SINGLETON_PK = 1

    currency = models.CharField(
        _("currency"),
        max_length=3,
        default="usd",
        help_text=_("ISO code Stripe charges in, lower case."),
    )
    price_per_usd = models.DecimalField(
        _("price per usd"),
        max_digits=12,
        decimal_places=4,
        default=Decimal("1"),
        help_text=_("Price of $1 of credit in the payment currency, before discounts."),
    )
    min_credit_usd = models.DecimalField(
        _("min credit usd"), max_digits=10, decimal_places=2, default=Decimal("5")
    )
    max_credit_usd = models.DecimalField(
        _("max credit usd"), max_digits=10, decimal_places=2, default=Decimal("10000")
    )
    preset_amounts = models.CharField(
        _("preset amounts"),
        max_length=200,
        default="10,20,50,100,500,1000",
        help_text=_("Credit amounts in USD offered as buttons, separated by commas."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("recharge settings")
        verbose_name_plural = _("recharge settings")
        constraints = [
            models.CheckConstraint(
                condition=Q(price_per_usd__gt=0), name="billing_recharge_price_pos"
            ),
            models.CheckConstraint(
                condition=Q(min_credit_usd__gt=0) & Q(max_credit_usd__gte=F("min_credit_usd")),
                name="billing_recharge_bounds_ordered",
            ),
        ]

    def __str__(self) -> str:
        return gettext("Recharge settings")

    @property
    def presets(self) -> list[Decimal]:
        values = []
        for part in self.preset_amounts.split(","):
            try:
                values.append(Decimal(part.strip()))
            except InvalidOperation:
                continue
        return [value for value in values if value.is_finite() and value > 0]


class RechargeTier(models.Model):
    """A discount reached by one top-up's amount, or by what a user recharged in all."""

    class Kind(models.TextChoices):
        SINGLE = "single", _("Single top-up of at least")
        LIFETIME = "lifetime", _("Lifetime recharge of at least")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    threshold = models.BigIntegerField(_("threshold"), help_text=_("Micro-USD of credit."))
    discount_percent = models.DecimalField(_("discount percent"), max_digits=5, decimal_places=2)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("recharge tier")
        verbose_name_plural = _("recharge tiers")
        ordering = ["kind", "threshold"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "threshold"], name="billing_tier_unique"),
            models.CheckConstraint(condition=Q(threshold__gt=0), name="billing_tier_threshold_pos"),
            models.CheckConstraint(
                condition=Q(discount_percent__gte=0) & Q(discount_percent__lt=100),
                name="billing_tier_discount_range",
            ),
        ]

    def __str__(self) -> str:
        threshold = format_usd_exact(self.threshold)
        return f"{self.get_kind_display()} {threshold}: {self.discount_percent}%"


class UserDiscount(models.Model):
    """A permanent discount agreed with one customer (enterprise)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="recharge_discount",
    )
    discount_percent = models.DecimalField(_("discount percent"), max_digits=5, decimal_places=2)
    note = models.CharField(_("note"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("user discount")
        verbose_name_plural = _("user discounts")
        constraints = [
            models.CheckConstraint(
                condition=Q(discount_percent__gte=0) & Q(discount_percent__lt=100),
                name="billing_user_discount_range",
            ),
        ]

    def __str__(self) -> str:
        return gettext("%(percent)s%% for %(user)s") % {
            "percent": self.discount_percent,
            "user": self.user_id,
        }


class RechargeOrder(models.Model):
    """One top-up by card: what was quoted, what Stripe reported, whether it was credited.

    The credit itself is one ledger entry with the key `order:<number>`, so the
    webhook, the return page, the sweeper and an admin can all try to credit and
    exactly one entry results. `paid_at` is set only once a payment was verified
    against this order (amount, currency, live/test mode).
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending payment")
        PAID = "paid", _("Payment received, crediting")
        CREDITED = "credited", _("Credited")
        FAILED = "failed", _("Payment failed")
        EXPIRED = "expired", _("Expired")
        NEEDS_ATTENTION = "needs_attention", _("Needs attention")
        REFUNDED = "refunded", _("Refunded")
        DISPUTED = "disputed", _("Disputed")

    class DiscountSource(models.TextChoices):
        NONE = "", _("None")
        SINGLE = "single", _("Top-up amount tier")
        LIFETIME = "lifetime", _("Lifetime recharge tier")
        USER = "user", _("Personal discount")

    number = models.CharField(_("number"), max_length=32, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.PROTECT,
        related_name="recharge_orders",
    )
    credit = models.BigIntegerField(_("credit"), help_text=_("Micro-USD of credit bought."))
    currency = models.CharField(_("currency"), max_length=3)
    price_per_usd = models.DecimalField(_("price per usd"), max_digits=12, decimal_places=4)
    amount_minor = models.BigIntegerField(
        _("amount minor"), help_text=_("Charged, in the currency's minor unit.")
    )
    discount_percent = models.DecimalField(
        _("discount percent"), max_digits=5, decimal_places=2, default=Decimal(0)
    )
    discount_source = models.CharField(
        _("discount source"), max_length=16, choices=DiscountSource.choices, default="", blank=True
    )
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    livemode = models.BooleanField(_("livemode"), default=False)
    stripe_session_id = models.CharField(
        _("stripe session id"), max_length=255, blank=True, db_index=True
    )
    stripe_payment_intent_id = models.CharField(
        _("stripe payment intent id"), max_length=255, blank=True, db_index=True
    )
    stripe_charge_id = models.CharField(
        _("stripe charge id"), max_length=255, blank=True, db_index=True
    )
    amount_refunded_minor = models.BigIntegerField(_("amount refunded minor"), default=0)
    paid_at = models.DateTimeField(_("paid at"), null=True, blank=True)
    credited_at = models.DateTimeField(_("credited at"), null=True, blank=True)
    attention_notified_at = models.DateTimeField(_("attention notified at"), null=True, blank=True)
    receipt_sent_at = models.DateTimeField(_("receipt sent at"), null=True, blank=True)
    ledger_entry = models.OneToOneField(
        LedgerEntry,
        verbose_name=_("ledger entry"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="order",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("recharge order")
        verbose_name_plural = _("recharge orders")
        ordering = ["-created_at", "-id"]
        permissions = [("credit_order_manually", "Can credit a recharge order by hand")]
        indexes = [
            models.Index(
                fields=["paid_at"],
                condition=Q(credited_at__isnull=True, paid_at__isnull=False),
                name="billing_order_uncredited",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(credit__gt=0), name="billing_order_credit_pos"),
            models.CheckConstraint(
                condition=Q(amount_minor__gt=0), name="billing_order_amount_pos"
            ),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def is_credited(self) -> bool:
        return self.ledger_entry_id is not None


# What the customer's timeline says for each kind of event, in their language. The stored
# `message` keeps the details (Stripe ids, amounts in minor units) for the admin.
_CUSTOMER_TEXTS = {
    "created": _("Order created."),
    "checkout": _("The payment page was opened."),
    "awaiting_payment": _("Checkout completed; the payment is still processing."),
    "paid": _("Payment received."),
    "credited": _("Credited to your balance."),
    "credited_by_hand": _("Credited by our team after checking the payment."),
    "failed": _("The payment failed."),
    "expired": _("The checkout expired unpaid."),
    "refund": _("Refunded."),
    "dispute_opened": _("The payment is disputed with the bank: the account is frozen."),
    "dispute_lost": _("The dispute was lost: the payment was taken back."),
    "dispute_won": _("The dispute is closed."),
}


class OrderEvent(models.Model):
    """One line of an order's timeline: what happened, who did it. Append-only."""

    order = models.ForeignKey(
        RechargeOrder, verbose_name=_("order"), on_delete=models.CASCADE, related_name="events"
    )
    at = models.DateTimeField(_("at"), auto_now_add=True)
    kind = models.CharField(_("kind"), max_length=40)
    message = models.TextField(_("message"))
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("actor"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )

    class Meta:
        verbose_name = _("order event")
        verbose_name_plural = _("order events")
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.order_id} · {self.customer_text}"

    @property
    def customer_text(self) -> str:
        """What the customer's timeline says: checks and flags read as one sentence."""
        return str(_CUSTOMER_TEXTS.get(self.kind, _("Checked by our team.")))


class StripeEvent(models.Model):
    """Each Stripe event id once: a redelivered event is acknowledged and ignored.

    A body that carries no usable id is stored under `unreadable:<SHA-256 of it>`.
    """

    event_id = models.CharField(_("event id"), max_length=255, unique=True)
    type = models.CharField(_("type"), max_length=100)
    livemode = models.BooleanField(_("livemode"), default=False)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    # Why a verified event was not acted on (its shape could not be read); empty
    # for every event that was. Such an event moved no money.
    problem = models.TextField(_("problem"), blank=True)

    class Meta:
        verbose_name = _("stripe event")
        verbose_name_plural = _("stripe events")
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class RedemptionCode(models.Model):
    """A code worth some credit, minted by an admin, redeemed once by one user.

    A code works like cash, so it is never stored: only its SHA-256 (to look it up
    when someone redeems it) and its first group (for people to tell codes apart).
    The minting admin sees the codes once (`billing.recharge.codes_mint`).
    """

    # SHA-256 in hex of the normalised code (`billing.recharge.code_hash`).
    code_hash = models.CharField(_("code hash"), max_length=64, unique=True)
    # The code's first four characters, e.g. "K7QX" of K7QX-…: a fifth of its randomness.
    code_prefix = models.CharField(_("code prefix"), max_length=4)
    credit = models.BigIntegerField(_("credit"), help_text=_("Micro-USD credited on redemption."))
    batch = models.CharField(_("batch"), max_length=100, db_index=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    redeemed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("redeemed by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="redeemed_codes",
    )
    redeemed_at = models.DateTimeField(_("redeemed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("redemption code")
        verbose_name_plural = _("redemption codes")
        ordering = ["-created_at", "id"]
        permissions = [("mint_redemption_code", "Can mint redemption codes (and see them once)")]
        constraints = [
            models.CheckConstraint(condition=Q(credit__gt=0), name="billing_code_credit_pos"),
        ]

    def __str__(self) -> str:
        return f"{self.code_prefix}-…"

    @property
    def state(self) -> str:
        if self.redeemed_at is not None:
            return "Redeemed"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "Expired"
        return "Unused"

    @property
    def state_display(self) -> str:
        """Return the state as people read it, in their language."""
        return str(_REDEMPTION_STATES[self.state])


_REDEMPTION_STATES = {"Redeemed": _("Redeemed"), "Expired": _("Expired"), "Unused": _("Unused")}
