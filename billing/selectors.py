"""Reads of money: account summaries, ledger pages, the books for reconcile."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import BigIntegerField, Count, F, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Token
from billing.grants import GRANT_PREFIX
from billing.models import (
    Account,
    LedgerEntry,
    RechargeOrder,
    RechargeTier,
    Reservation,
    SpendReport,
    UserDiscount,
)
from logs.models import AccountDay, PrunedTokenUsage, RequestLog
from logs.rollups import bucket_start


def account_for_user(*, user_id: int) -> Account:
    """Return the user's account (created with the user; created here if it is missing)."""
    account, _ = Account.objects.get_or_create(user_id=user_id)
    return account


# The spend report's average covers the whole UTC days before today, this many of them.
SPEND_REPORT_DAYS = 30


def _day_spend(**buckets: datetime) -> Coalesce:
    """Return each account's spend (micro-USD) in these day buckets, from the account days."""
    spend = (
        AccountDay.objects.filter(user_id=OuterRef("user_id"), **buckets)
        .order_by()
        .values("user_id")
        .annotate(total=Sum("cost"))
        .values("total")
    )
    # A bigint: the admin's filter compares it with amounts past 2**31 micro-USD.
    return Coalesce(Subquery(spend, output_field=BigIntegerField()), 0)


def spend_report(*, now: datetime | None = None) -> QuerySet[SpendReport]:
    """Return every account with its spend today, yesterday and over the last
    SPEND_REPORT_DAYS whole days (UTC, from the account days), its credited recharge
    orders and its personal discount: one query for any number of accounts.

    `recharged` (lifetime recharge) is the account's own sum of credited top-ups, the
    figure the lifetime discount tiers read.
    """
    today = bucket_start((now or timezone.now()).astimezone(UTC), "day")
    orders = (
        RechargeOrder.objects.filter(user_id=OuterRef("user_id"), ledger_entry__isnull=False)
        .order_by()
        .values("user_id")
        .annotate(count=Count("id"))
        .values("count")
    )
    return SpendReport.objects.select_related("user").annotate(
        spend_today=_day_spend(bucket=today),
        spend_yesterday=_day_spend(bucket=today - timedelta(days=1)),
        spend_period=_day_spend(
            bucket__gte=today - timedelta(days=SPEND_REPORT_DAYS), bucket__lt=today
        ),
        credited_orders=Coalesce(Subquery(orders, output_field=BigIntegerField()), 0),
        discount_percent=F("user__recharge_discount__discount_percent"),
        discount_id=F("user__recharge_discount__id"),
    )


def ledger_entry_list(*, user_id: int) -> QuerySet[LedgerEntry]:
    """Return the user's ledger entries, newest first, with who made manual ones."""
    return LedgerEntry.objects.filter(account_id=user_id).select_related("created_by")


@dataclass(frozen=True)
class Drift:
    subject: str
    field: str
    stored: int
    expected: int

    def __str__(self) -> str:
        return (
            f"{self.subject}: {self.field} is {self.stored}, the books say {self.expected} "
            f"(drift {self.stored - self.expected:+d})"
        )


def _open_holds(field: str, amount: str) -> dict[int, int]:
    rows = (
        Reservation.objects.filter(status=Reservation.Status.OPEN, **{f"{field}__isnull": False})
        .values(field)
        .annotate(total=Sum(amount))
    )
    return {row[field]: row["total"] for row in rows}


def books_drift(*, user_ids: list[int] | None = None) -> list[Drift]:
    """Return every difference between stored balances and what the books prove.

    For each account: balance = Σ ledger - Σ request costs after its last usage
    settlement entry; reserved = Σ open reservations. For each token: used = Σ
    its request costs (those of rows retention deleted are in PrunedTokenUsage);
    reserved = Σ what its open reservations hold on its quota.
    """
    drifts: list[Drift] = []
    accounts = Account.objects.order_by("pk")
    tokens = Token.objects.order_by("pk")
    if user_ids is not None:
        accounts = accounts.filter(pk__in=user_ids)
        tokens = tokens.filter(user_id__in=user_ids)
    account_holds = _open_holds("account_id", "amount")
    token_holds = _open_holds("token_id", "token_amount")
    for account in accounts.iterator():
        ledger = LedgerEntry.objects.filter(account=account).aggregate(
            total=Sum("amount"),
            through=Max("usage_through_log_id"),
        )
        logs = RequestLog.objects.filter(user_id=account.pk)
        if ledger["through"] is not None:
            logs = logs.filter(id__gt=ledger["through"])
        unsettled = logs.aggregate(total=Sum("cost"))["total"] or 0
        expected = (ledger["total"] or 0) - unsettled
        subject = f"account {account.pk}"
        if account.balance != expected:
            drifts.append(Drift(subject, "balance", account.balance, expected))
        held = account_holds.get(account.pk, 0)
        if account.reserved != held:
            drifts.append(Drift(subject, "reserved", account.reserved, held))
    token_used = dict(
        RequestLog.objects.filter(token__isnull=False)
        .values("token_id")
        .annotate(total=Sum("cost"))
        .values_list("token_id", "total")
    )
    for token_id, pruned in PrunedTokenUsage.objects.values_list("token_id", "cost"):
        token_used[token_id] = token_used.get(token_id, 0) + pruned
    for token in tokens.iterator():
        subject = f"token {token.pk} of user {token.user_id}"
        if token.used != token_used.get(token.pk, 0):
            drifts.append(Drift(subject, "used", token.used, token_used.get(token.pk, 0)))
        if token.reserved != token_holds.get(token.pk, 0):
            drifts.append(Drift(subject, "reserved", token.reserved, token_holds.get(token.pk, 0)))
        if token.quota_remaining is not None and token.quota_remaining < token.reserved:
            drifts.append(Drift(subject, "quota_remaining", token.quota_remaining, token.reserved))
    return drifts


def order_list(*, user_id: int) -> QuerySet[RechargeOrder]:
    """Return a user's recharge orders, newest first, all time."""
    return RechargeOrder.objects.filter(user_id=user_id).order_by("-created_at", "-id")


def welcome_credit(*, user_id: int) -> int | None:
    """Return the welcome credit the account was given at sign-up (micro-USD), or None."""
    return (
        LedgerEntry.objects.filter(account_id=user_id, idempotency_key=f"signup:{user_id}")
        .values_list("amount", flat=True)
        .first()
    )


def recharge_tier_list() -> QuerySet[RechargeTier]:
    """Return the discount tiers, by kind, then by threshold."""
    return RechargeTier.objects.order_by("kind", "threshold")


def user_discount_for(*, user_id: int) -> UserDiscount | None:
    """Return the user's own permanent discount, if one was agreed."""
    return UserDiscount.objects.filter(user_id=user_id).first()


# An order a person should look at: flagged, or paid but not credited. The admin's
# "needs attention" filter and the dashboard read the same.
ORDERS_NEEDING_ATTENTION = Q(status=RechargeOrder.Status.NEEDS_ATTENTION) | Q(
    paid_at__isnull=False, ledger_entry__isnull=True
)


@dataclass(frozen=True)
class Revenue:
    """Money in and out through recharges from a moment on (micro-USD; refunds and
    disputes as positive amounts taken back)."""

    recharges: int
    recharge_count: int
    refunds: int
    refund_count: int
    disputes: int
    dispute_count: int

    @property
    def net(self) -> int:
        return self.recharges - self.refunds - self.disputes


def revenue_summary(*, since: datetime) -> Revenue:
    """Return recharges, refunds and lost disputes from `since`: one query on the ledger."""
    kinds = LedgerEntry.Kind
    sums = LedgerEntry.objects.filter(
        created_at__gte=since, kind__in=[kinds.RECHARGE, kinds.REFUND, kinds.DISPUTE]
    ).aggregate(
        recharges=Sum("amount", filter=Q(kind=kinds.RECHARGE), default=0),
        recharge_count=Count("id", filter=Q(kind=kinds.RECHARGE)),
        refunds=Sum("amount", filter=Q(kind=kinds.REFUND), default=0),
        refund_count=Count("id", filter=Q(kind=kinds.REFUND)),
        disputes=Sum("amount", filter=Q(kind=kinds.DISPUTE), default=0),
        dispute_count=Count("id", filter=Q(kind=kinds.DISPUTE)),
    )
    return Revenue(
        recharges=sums["recharges"],
        recharge_count=sums["recharge_count"],
        refunds=-sums["refunds"],
        refund_count=sums["refund_count"],
        disputes=-sums["disputes"],
        dispute_count=sums["dispute_count"],
    )


@dataclass(frozen=True)
class OrdersNeedingAttention:
    oldest: list[RechargeOrder]  # with their users
    count: int
    # Disputed orders: their accounts stay frozen until the bank decides.
    disputed: int


def orders_needing_attention(*, limit: int = 20) -> OrdersNeedingAttention:
    """Return the oldest `limit` orders needing attention, how many there are and how many
    orders are disputed: two queries (one when none needs attention)."""
    disputed = Q(status=RechargeOrder.Status.DISPUTED)
    counts = RechargeOrder.objects.filter(ORDERS_NEEDING_ATTENTION | disputed).aggregate(
        count=Count("id", filter=ORDERS_NEEDING_ATTENTION), disputed=Count("id", filter=disputed)
    )
    oldest: list[RechargeOrder] = []
    if counts["count"]:
        oldest = list(
            RechargeOrder.objects.filter(ORDERS_NEEDING_ATTENTION)
            .select_related("user")
            .order_by("created_at", "id")[:limit]
        )
    return OrdersNeedingAttention(oldest=oldest, count=counts["count"], disputed=counts["disputed"])


def open_grants_summary() -> tuple[int, int]:
    """Return how many credit grants are open and the micro-USD they hold: one query."""
    sums = Reservation.objects.filter(
        status=Reservation.Status.OPEN, request_id__startswith=GRANT_PREFIX
    ).aggregate(count=Count("id"), amount=Sum("amount", default=0))
    return sums["count"], sums["amount"]
