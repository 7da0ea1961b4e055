"""Recharge orders: create, mark paid, credit, refund, dispute; redemption codes.

Every path that can credit an order (webhook, return page, sweeper, admin)
ends in `order_credit`, which locks the order row and writes one ledger entry
with the key `order:<number>`: whichever path gets there first credits, the
others find the entry and change nothing. Refunds and lost disputes debit once
per Stripe refund / dispute id. Locks: the order (or code) row, then the
account row, in every path, so two transactions never wait on each other in a
cycle. Nothing here calls Stripe or sends mail inside a transaction: emails go
out through tasks enqueued on commit.
"""

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from accounts.locale import text_for
from accounts.models import AuditEvent, User
from accounts.services import audit_record
from billing.models import (
    Account,
    LedgerEntry,
    OrderEvent,
    RechargeOrder,
    RedemptionCode,
)
from billing.pricing import recharge_quote
from billing.services import account_credit, account_debit
from billing.stripe_api import livemode

logger = logging.getLogger(__name__)

Status = RechargeOrder.Status

# A paid order still uncredited this long after payment needs attention: admins are
# emailed, and the customer's order page offers support. Crediting takes well under a
# second, and the sweeper retries every minute (billing.tasks), so ten minutes means
# something is wrong that a person should look at.
ATTENTION_SECONDS = 600
# The sweeper leaves an order alone this long after payment: time for the credit task
# the webhook enqueued to run first.
SWEEP_GRACE_SECONDS = 30


class RechargeError(Exception):
    """A refused recharge operation; the message is for a person. Nothing was changed."""


def _event(order: RechargeOrder, kind: str, message: str, actor: User | None = None) -> None:
    OrderEvent.objects.create(order=order, kind=kind, message=message, actor=actor)


def _enqueue_credit(order_id: int) -> None:
    from billing.tasks import order_credit_task

    transaction.on_commit(lambda: order_credit_task.delay(order_id))


def order_create(*, user: User, credit: int) -> RechargeOrder:
    """Record a pending order for `credit` micro-USD at today's price and best discount."""
    quote = recharge_quote(user_id=user.pk, credit=credit)
    now = timezone.now()
    with transaction.atomic():
        order = RechargeOrder.objects.create(
            number=f"pending-{secrets.token_hex(8)}",
            user=user,
            credit=credit,
            currency=quote.currency,
            price_per_usd=quote.price_per_usd,
            amount_minor=quote.amount_minor,
            discount_percent=quote.discount_percent,
            discount_source=quote.discount_source,
            livemode=livemode(),
        )
        # The number is the row id, so it is unique and tells admins how old it is.
        order.number = f"R-{now.year}-{order.pk:06d}"
        order.save(update_fields=["number"])
        discount = ""
        if quote.discount_source:
            discount = f", {quote.discount_percent}% off ({quote.source_label})"
        _event(order, "created", f"Order for {quote.credit_display} at {quote.display}{discount}.")
    return order


def order_session_attach(*, order_id: int, session_id: str) -> None:
    """Keep the Checkout Session id on the order (the same id again changes nothing)."""
    with transaction.atomic():
        order = RechargeOrder.objects.select_for_update().get(pk=order_id)
        if order.stripe_session_id == session_id:
            return
        order.stripe_session_id = session_id
        order.save(update_fields=["stripe_session_id", "updated_at"])
        _event(order, "checkout", f"Checkout opened ({session_id}).")


@dataclass(frozen=True)
class Payment:
    """What Stripe reports about a completed payment."""

    amount_minor: int | None
    currency: str
    livemode: bool
    payment_intent_id: str
    source: str


def order_mark_paid(*, order_id: int, payment: Payment) -> RechargeOrder:
    """Record a successful payment once it matches the order; enqueue crediting on commit.

    A payment whose amount, currency or live/test mode differs from the order is
    not credited: the order needs attention. Success after a failure or an
    expiry still counts (the money arrived); nothing moves a paid order back.
    """
    with transaction.atomic():
        order = RechargeOrder.objects.select_for_update().get(pk=order_id)
        if order.paid_at is not None:
            return order
        problems = []
        if payment.amount_minor != order.amount_minor:
            problems.append(f"amount {payment.amount_minor} ≠ {order.amount_minor}")
        if payment.currency.lower() != order.currency:
            problems.append(f"currency {payment.currency} ≠ {order.currency}")
        if payment.livemode != order.livemode:
            problems.append(f"live mode {payment.livemode} ≠ {order.livemode}")
        if problems:
            if order.status not in (Status.NEEDS_ATTENTION, Status.CREDITED):
                order.status = Status.NEEDS_ATTENTION
                if payment.payment_intent_id:
                    order.stripe_payment_intent_id = payment.payment_intent_id
                order.save(update_fields=["status", "stripe_payment_intent_id", "updated_at"])
                _event(
                    order,
                    "mismatch",
                    f"Payment reported by {payment.source} does not match the order "
                    f"({'; '.join(problems)}): not credited.",
                )
                logger.warning("Order %s: payment mismatch: %s", order.number, problems)
            return order
        order.paid_at = timezone.now()
        if order.is_credited:
            order.status = Status.CREDITED
        elif order.status not in (Status.REFUNDED, Status.DISPUTED):
            order.status = Status.PAID
        order.stripe_payment_intent_id = payment.payment_intent_id or order.stripe_payment_intent_id
        order.save(update_fields=["paid_at", "status", "stripe_payment_intent_id", "updated_at"])
        _event(order, "paid", f"Payment received (reported by {payment.source}).")
        _enqueue_credit(order.pk)
    return order


def order_mark_unsuccessful(*, order_id: int, status: str, message: str) -> RechargeOrder:
    """Mark a still-pending order failed or expired; any other status stays."""
    assert status in (Status.FAILED, Status.EXPIRED)
    with transaction.atomic():
        order = RechargeOrder.objects.select_for_update().get(pk=order_id)
        if order.status == Status.PENDING and order.paid_at is None:
            order.status = status
            order.save(update_fields=["status", "updated_at"])
        _event(order, status, message)
    return order


def order_note(*, order_id: int, kind: str, message: str) -> None:
    with transaction.atomic():
        _event(RechargeOrder.objects.get(pk=order_id), kind, message)


def order_credit(*, order_id: int, actor: User | None = None, reason: str = "") -> bool:
    """Credit the order's balance once; return whether this call credited it.

    Automatic paths (`actor` None) credit only a verified payment. An admin with
    the permission may credit any uncredited order with a reason: the payment was
    checked by hand. Either way the ledger key `order:<number>` lands once.
    """
    if actor is not None and not reason.strip():
        raise RechargeError(gettext("Crediting an order by hand needs a reason."))
    with transaction.atomic():
        order = RechargeOrder.objects.select_for_update().filter(pk=order_id).first()
        if order is None or order.ledger_entry_id is not None:
            return False
        if actor is None and order.paid_at is None:
            return False
        if actor is None:
            note = text_for(order.user_id, gettext_noop("Order %(order)s"), order=order.number)
        else:
            note = text_for(
                order.user_id,
                gettext_noop("Order %(order)s, credited by hand: %(reason)s"),
                order=order.number,
                reason=reason.strip(),
            )
        entry = account_credit(
            user_id=order.user_id,
            amount=order.credit,
            idempotency_key=f"order:{order.number}",
            kind=LedgerEntry.Kind.RECHARGE,
            reason=note,
            created_by=actor,
        )
        order.ledger_entry = entry
        order.credited_at = timezone.now()
        if order.status not in (Status.REFUNDED, Status.DISPUTED):
            order.status = Status.CREDITED
        order.save(update_fields=["ledger_entry", "credited_at", "status", "updated_at"])
        if actor is not None:
            _event(order, "credited_by_hand", f"Credited by hand: {reason.strip()}", actor)
        else:
            _event(order, "credited", "Credited to the balance.")
        from billing.tasks import order_receipt_send_task

        transaction.on_commit(lambda: order_receipt_send_task.delay(order.pk))
    return True


def _order_for_charge(*, payment_intent_id: str, charge_id: str) -> RechargeOrder | None:
    match = Q(pk__in=[])
    if payment_intent_id:
        match |= Q(stripe_payment_intent_id=payment_intent_id)
    if charge_id:
        match |= Q(stripe_charge_id=charge_id)
    return RechargeOrder.objects.select_for_update().filter(match).order_by("pk").first()


def _credit_share(order: RechargeOrder, amount_minor: int) -> int:
    """Return the micro-USD of credit that `amount_minor` of the charge paid for."""
    share = Decimal(order.credit) * amount_minor / order.amount_minor
    return int(share.to_integral_value(rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Refund:
    id: str
    amount_minor: int
    created: int


def order_refunds_record(
    *,
    payment_intent_id: str,
    charge_id: str,
    refunds: list[Refund],
    amount_refunded_minor: int = 0,
) -> RechargeOrder | None:
    """Debit each refund of the order's charge once (key `refund:<id>`); may go negative.

    Each refund debits the credit its share of the charge paid for. Shares are
    computed on the running total (oldest refund first), so refunds adding up to
    the whole charge take back exactly the whole credit. Stripe API versions that
    do not list a charge's refunds in the event give only the charge's refunded
    total: then the growth of that total is debited, keyed by the total.
    """
    with transaction.atomic():
        order = _order_for_charge(payment_intent_id=payment_intent_id, charge_id=charge_id)
        if order is None:
            logger.warning(
                "Refund of a charge with no known order (%s, %s)", charge_id, payment_intent_id
            )
            return None
        if charge_id and not order.stripe_charge_id:
            order.stripe_charge_id = charge_id
        if not _credit_given(order):
            # A payment that never matched its order was not credited: its refund
            # gives the money back and takes nothing from the balance.
            refunded = max(
                order.amount_refunded_minor,
                amount_refunded_minor,
                sum(refund.amount_minor for refund in refunds),
            )
            order.amount_refunded_minor = min(refunded, order.amount_minor)
            if order.amount_refunded_minor >= order.amount_minor:
                order.status = Status.REFUNDED
            order.save(
                update_fields=["stripe_charge_id", "amount_refunded_minor", "status", "updated_at"]
            )
            _event(order, "refund", "Refunded before any credit: nothing taken from the balance.")
            return order
        running = 0
        for refund in sorted(refunds, key=lambda r: (r.created, r.id)):
            before = _credit_share(order, running)
            running += refund.amount_minor
            debit = _credit_share(order, min(running, order.amount_minor)) - before
            key = f"refund:{refund.id}"
            if debit <= 0 or LedgerEntry.objects.filter(idempotency_key=key).exists():
                continue
            account_debit(
                user_id=order.user_id,
                amount=debit,
                idempotency_key=key,
                kind=LedgerEntry.Kind.REFUND,
                reason=text_for(
                    order.user_id,
                    gettext_noop("Refund %(refund)s of order %(order)s"),
                    refund=refund.id,
                    order=order.number,
                ),
                allow_negative=True,
            )
            _event(order, "refund", f"Refund {refund.id}: {refund.amount_minor} minor units.")
        if not refunds and amount_refunded_minor > order.amount_refunded_minor:
            running = min(amount_refunded_minor, order.amount_minor)
            debit = _credit_share(order, running) - _credit_share(
                order, order.amount_refunded_minor
            )
            if debit > 0:
                account_debit(
                    user_id=order.user_id,
                    amount=debit,
                    idempotency_key=f"refund:{charge_id or payment_intent_id}:{running}",
                    kind=LedgerEntry.Kind.REFUND,
                    reason=text_for(
                        order.user_id,
                        gettext_noop("Refund of order %(order)s"),
                        order=order.number,
                    ),
                    allow_negative=True,
                )
                _event(order, "refund", f"Refunded in all: {running} minor units.")
        order.amount_refunded_minor = max(order.amount_refunded_minor, running)
        if running >= order.amount_minor:
            order.status = Status.REFUNDED
        order.save(
            update_fields=["stripe_charge_id", "amount_refunded_minor", "status", "updated_at"]
        )
    return order


@dataclass(frozen=True)
class Dispute:
    id: str
    amount_minor: int
    status: str
    payment_intent_id: str
    charge_id: str


def _credit_given(order: RechargeOrder) -> bool:
    """Say whether the order was credited, or will be (its payment was verified)."""
    return order.is_credited or order.paid_at is not None


def _account_freeze(*, user_id: int, frozen: bool, reason: str) -> None:
    """Freeze or unfreeze an account for the payment system, saying why in the audit log.

    A frozen account keeps the reason of its latest dispute; only a change of state
    (frozen, unfrozen) is an audit row.
    """
    changed = (
        Account.objects.filter(pk=user_id)
        .exclude(is_frozen=frozen)
        .update(is_frozen=frozen, frozen_reason=reason if frozen else "")
    )
    if frozen and not changed:
        Account.objects.filter(pk=user_id).update(frozen_reason=reason)
    if changed:
        audit_record(
            action=AuditEvent.Action.ACCOUNT_FROZEN
            if frozen
            else AuditEvent.Action.ACCOUNT_UNFROZEN,
            target=Account(pk=user_id),
            user_id=user_id,
            detail={"reason": reason},
        )


def order_dispute_open(*, dispute: Dispute) -> RechargeOrder | None:
    """Freeze the account while the bank looks at a payment: its tokens stop spending."""
    with transaction.atomic():
        order = _order_for_charge(
            payment_intent_id=dispute.payment_intent_id, charge_id=dispute.charge_id
        )
        if order is None:
            return None
        order.status = Status.DISPUTED
        order.save(update_fields=["status", "updated_at"])
        _account_freeze(
            user_id=order.user_id,
            frozen=True,
            reason=text_for(
                order.user_id,
                gettext_noop("Payment dispute %(dispute)s on order %(order)s"),
                dispute=dispute.id,
                order=order.number,
            ),
        )
        _event(order, "dispute_opened", f"Dispute {dispute.id} opened: account frozen.")
    return order


def order_dispute_close(*, dispute: Dispute) -> RechargeOrder | None:
    """Unfreeze the account; a lost dispute debits the disputed share once (`dispute:<id>`)."""
    with transaction.atomic():
        order = _order_for_charge(
            payment_intent_id=dispute.payment_intent_id, charge_id=dispute.charge_id
        )
        if order is None:
            return None
        if dispute.status == "lost" and _credit_given(order):
            account_debit(
                user_id=order.user_id,
                amount=_credit_share(order, min(dispute.amount_minor, order.amount_minor)),
                idempotency_key=f"dispute:{dispute.id}",
                kind=LedgerEntry.Kind.DISPUTE,
                reason=text_for(
                    order.user_id,
                    gettext_noop("Lost payment dispute %(dispute)s on order %(order)s"),
                    dispute=dispute.id,
                    order=order.number,
                ),
                allow_negative=True,
            )
            order.status = Status.REFUNDED
            order.save(update_fields=["status", "updated_at"])
            _event(order, "dispute_lost", f"Dispute {dispute.id} lost: the payment was taken back.")
        elif dispute.status == "lost":
            order.status = Status.REFUNDED
            order.save(update_fields=["status", "updated_at"])
            _event(order, "dispute_lost", f"Dispute {dispute.id} lost before any credit.")
        else:
            order.status = Status.CREDITED if order.is_credited else Status.PAID
            order.save(update_fields=["status", "updated_at"])
            _event(order, "dispute_won", f"Dispute {dispute.id} closed ({dispute.status}).")
        # The account row is locked before other disputes are looked at, so a
        # dispute opening at the same moment (it updates that row) is seen.
        Account.objects.select_for_update().filter(pk=order.user_id).first()
        still_disputed = (
            RechargeOrder.objects.filter(user_id=order.user_id, status=Status.DISPUTED)
            .exclude(pk=order.pk)
            .exists()
        )
        if not still_disputed:
            _account_freeze(
                user_id=order.user_id,
                frozen=False,
                reason=text_for(
                    order.user_id,
                    gettext_noop(
                        "Payment dispute %(dispute)s on order %(order)s closed (%(status)s)"
                    ),
                    dispute=dispute.id,
                    order=order.number,
                    status=dispute.status,
                ),
            )
    return order


def orders_sweep(*, now: datetime | None = None) -> list[int]:
    """Return paid-but-uncredited orders to credit again; flag the late ones.

    An order still uncredited `ATTENTION_SECONDS` after payment
    becomes "needs attention" (it is still credited automatically if a credit
    gets through).
    """
    now = now or timezone.now()
    grace = timedelta(seconds=SWEEP_GRACE_SECONDS)
    uncredited = RechargeOrder.objects.filter(
        paid_at__isnull=False, ledger_entry__isnull=True, paid_at__lte=now - grace
    )
    order_ids = list(uncredited.order_by("paid_at").values_list("pk", flat=True)[:500])
    late = uncredited.filter(
        status=Status.PAID,
        paid_at__lte=now - timedelta(seconds=ATTENTION_SECONDS),
    )
    for order_id in late.values_list("pk", flat=True):
        with transaction.atomic():
            order = RechargeOrder.objects.select_for_update().get(pk=order_id)
            if order.status != Status.PAID or order.ledger_entry_id is not None:
                continue
            order.status = Status.NEEDS_ATTENTION
            order.save(update_fields=["status", "updated_at"])
            minutes = ATTENTION_SECONDS // 60
            _event(
                order, "late", f"Not credited within {minutes} minutes of payment: needs attention."
            )
    return order_ids


# Statuses that mean only "not credited (yet)": an order in one of them is moved
# to "needs attention" when flagged, and crediting it clears that.
_FLAGGABLE_STATUSES = (Status.PENDING, Status.PAID, Status.FAILED, Status.EXPIRED)


def order_flag(*, order_id: int, kind: str, message: str) -> None:
    """Ask an admin to look at an order: a timeline line says why, and they are emailed.

    An order not credited yet becomes "needs attention" (crediting it, by hand or
    by a later valid payment, clears that). A credited, refunded or disputed order
    keeps its status, which means something of its own (a disputed one keeps its
    account frozen): the timeline and the email say what needs a person. The email
    goes to everyone who may credit orders by hand, now rather than at the next
    sweep, and again for each new flag.
    """
    from billing.tasks import orders_attention_email_task

    with transaction.atomic():
        order = RechargeOrder.objects.select_for_update().get(pk=order_id)
        if order.status in _FLAGGABLE_STATUSES:
            order.status = Status.NEEDS_ATTENTION
        # Claimed here, so the sweeper does not send a second email about it.
        order.attention_notified_at = timezone.now()
        order.save(update_fields=["status", "attention_notified_at", "updated_at"])
        _event(order, kind, message)
        logger.warning("Order %s flagged for attention (%s)", order.number, kind)
        transaction.on_commit(lambda: orders_attention_email_task.delay([order_id]))


def orders_needing_notice() -> list[int]:
    """Claim the orders needing attention that admins were not told about yet."""
    claimed = []
    for order_id in RechargeOrder.objects.filter(
        status=Status.NEEDS_ATTENTION, attention_notified_at__isnull=True
    ).values_list("pk", flat=True):
        if RechargeOrder.objects.filter(pk=order_id, attention_notified_at__isnull=True).update(
            attention_notified_at=timezone.now()
        ):
            claimed.append(order_id)
    return claimed


CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_GROUPS = 4
CODE_GROUP_LENGTH = 4
CODE_PREFIX_LENGTH = CODE_GROUP_LENGTH


def _new_code() -> str:
    groups = [
        "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUP_LENGTH))
        for _ in range(CODE_GROUPS)
    ]
    return "-".join(groups)


def code_normalise(code: str) -> str:
    """Return a code as it is hashed: upper case, without spaces or dashes."""
    return "".join(code.split()).replace("-", "").upper()


def code_hash(code: str) -> str:
    """Return the stored form of a redemption code: the SHA-256 of it, normalised, in hex.

    A plain hash without salt or a slow KDF is enough here: a code is 16 characters
    from a 32-letter alphabet, 80 random bits (`secrets`), so it cannot be found from
    its hash by trying codes, and the stored hash must be looked up by value. (A
    password, low in entropy, needs the opposite.)
    """
    return hashlib.sha256(code_normalise(code).encode()).hexdigest()


@dataclass(frozen=True)
class MintedCode:
    """A new code with its row: the only time the code itself exists outside a user's hands."""

    code: str
    row: RedemptionCode


def codes_mint(
    *, count: int, credit: int, batch: str, expires_at: datetime | None, created_by: User | None
) -> list[MintedCode]:
    """Create `count` single-use codes worth `credit` micro-USD each, in one batch.

    Return the codes themselves, once: only their hashes are stored. The caller
    shows them to the minting admin and keeps them nowhere (no session, message
    or log).
    """
    if not 1 <= count <= 10_000:
        raise RechargeError(gettext("Mint between 1 and 10,000 codes at a time."))
    if credit <= 0:
        raise RechargeError(gettext("A code is worth a positive amount."))
    if not batch.strip():
        raise RechargeError(gettext("Name the batch."))
    codes = {code_hash(code): code for code in (_new_code() for _ in range(count))}
    while len(codes) < count:  # Two equal codes in one batch: 80 bits make it theoretical.
        code = _new_code()
        codes[code_hash(code)] = code
    with transaction.atomic():
        rows = RedemptionCode.objects.bulk_create(
            [
                RedemptionCode(
                    code_hash=digest,
                    code_prefix=code_normalise(code)[:CODE_PREFIX_LENGTH],
                    credit=credit,
                    batch=batch.strip(),
                    expires_at=expires_at,
                    created_by=created_by,
                )
                for digest, code in codes.items()
            ]
        )
    return [MintedCode(code=codes[row.code_hash], row=row) for row in rows]


def code_redeem(*, user: User, code: str) -> RedemptionCode:
    """Credit a code's value to the user once; a used, expired or unknown code is refused.

    The code is looked up by its hash (an equality on a unique index: nothing to
    learn from timing that the hash does not already hide).
    """
    with transaction.atomic():
        row = RedemptionCode.objects.select_for_update().filter(code_hash=code_hash(code)).first()
        if row is None:
            raise RechargeError(gettext("This code does not exist. Check it and try again."))
        if row.redeemed_at is not None:
            raise RechargeError(gettext("This code was already redeemed."))
        if row.expires_at is not None and row.expires_at <= timezone.now():
            raise RechargeError(gettext("This code has expired."))
        account_credit(
            user_id=user.pk,
            amount=row.credit,
            # The row id, not the code: the ledger outlives the code and is read widely.
            idempotency_key=f"redeem:{row.pk}",
            kind=LedgerEntry.Kind.REDEMPTION,
            reason=text_for(
                user.pk,
                gettext_noop("Redemption code %(code)s from batch “%(batch)s”"),
                code=row,
                batch=row.batch,
            ),
        )
        row.redeemed_by = user
        row.redeemed_at = timezone.now()
        row.save(update_fields=["redeemed_by", "redeemed_at"])
    return row
