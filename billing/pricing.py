"""What a recharge costs: the best discount a user reaches and the exact charge.

The preview, the order and the amount Stripe is asked for all come from
`recharge_quote`, so the three can never disagree.
"""

from dataclasses import dataclass
from decimal import Decimal

from billing.models import RechargeOrder, RechargeSettings, RechargeTier, UserDiscount
from core.money import charge_minor, format_minor, format_usd

Source = RechargeOrder.DiscountSource


@dataclass(frozen=True)
class RechargeQuote:
    credit: int
    currency: str
    price_per_usd: Decimal
    discount_percent: Decimal
    discount_source: str
    tier: RechargeTier | None
    amount_minor: int
    full_amount_minor: int
    next_tier: RechargeTier | None
    # What the account owes now: the credit pays it back first.
    owed: int = 0
    # What the user recharged before this top-up (lifetime tiers count it).
    recharged: int = 0
    # Every discount this top-up reaches, best first: (percent, source, tier). The
    # first is the one applied; the others are why it was chosen over them.
    reached: tuple[tuple[Decimal, str, RechargeTier | None], ...] = ()
    # The first lifetime tier above what the user recharged that beats the discount.
    next_lifetime_tier: RechargeTier | None = None

    @property
    def beaten(self) -> tuple[tuple[Decimal, str, RechargeTier | None], ...]:
        """The other discounts this top-up reaches: they do not add up, the best one applies."""
        return self.reached[1:]

    @property
    def recharged_after(self) -> int:
        """What the user's top-ups add up to once this one is credited."""
        return self.recharged + self.credit

    @property
    def spendable(self) -> int:
        """What the top-up adds to what may be spent, once the debt is paid back."""
        return self.credit - self.owed

    @property
    def owed_display(self) -> str:
        return format_usd(-self.owed)

    @property
    def spendable_display(self) -> str:
        return format_usd(self.spendable)

    @property
    def display(self) -> str:
        return format_minor(self.amount_minor, self.currency)

    @property
    def full_display(self) -> str:
        return format_minor(self.full_amount_minor, self.currency)

    @property
    def credit_display(self) -> str:
        return format_usd(self.credit)

    @property
    def source_label(self) -> str:
        return str(Source(self.discount_source).label) if self.discount_source else ""


def recharge_settings() -> RechargeSettings:
    """Return the recharge settings row, created with defaults on first use."""
    row, _ = RechargeSettings.objects.get_or_create(pk=RechargeSettings.SINGLETON_PK)
    return row


def recharge_quote(
    *, user_id: int, credit: int, settings_row: RechargeSettings | None = None
) -> RechargeQuote:
    """Return the price of `credit` micro-USD for this user with the best discount they reach.

    Candidates: the highest single-top-up tier at or below `credit`, the highest
    lifetime tier at or below what the user recharged before, and the user's own
    permanent discount. The largest percentage wins; on a tie the earlier of
    single, lifetime, personal is named.
    """
    from billing.models import Account

    row = settings_row or recharge_settings()
    recharged, balance = Account.objects.filter(pk=user_id).values_list(
        "recharged", "balance"
    ).first() or (0, 0)
    tiers = list(RechargeTier.objects.order_by("threshold"))
    single = [t for t in tiers if t.kind == RechargeTier.Kind.SINGLE and t.threshold <= credit]
    lifetime = [
        t for t in tiers if t.kind == RechargeTier.Kind.LIFETIME and t.threshold <= recharged
    ]
    candidates: list[tuple[Decimal, str, RechargeTier | None]] = [(Decimal(0), Source.NONE, None)]
    if single:
        best = max(single, key=lambda t: t.discount_percent)
        candidates.append((best.discount_percent, Source.SINGLE, best))
    if lifetime:
        best = max(lifetime, key=lambda t: t.discount_percent)
        candidates.append((best.discount_percent, Source.LIFETIME, best))
    personal = UserDiscount.objects.filter(user_id=user_id).first()
    if personal is not None:
        candidates.append((personal.discount_percent, Source.USER, None))
    percent, source, tier = candidates[0]
    for candidate in candidates[1:]:
        if candidate[0] > percent:
            percent, source, tier = candidate
    if percent == 0:
        source, tier = Source.NONE, None
    reached = [c for c in candidates[1:] if c[0] > 0]
    # Best first; a tie keeps the order single, lifetime, personal (sorted is stable).
    reached.sort(key=lambda c: c[0], reverse=True)
    next_tier = next(
        (
            t
            for t in tiers
            if t.kind == RechargeTier.Kind.SINGLE
            and t.threshold > credit
            and t.discount_percent > percent
        ),
        None,
    )
    next_lifetime_tier = next(
        (
            t
            for t in tiers
            if t.kind == RechargeTier.Kind.LIFETIME
            and t.threshold > recharged
            and t.discount_percent > percent
        ),
        None,
    )
    return RechargeQuote(
        owed=max(0, -balance),
        recharged=recharged,
        reached=tuple(reached),
        next_lifetime_tier=next_lifetime_tier,
        credit=credit,
        currency=row.currency.lower(),
        price_per_usd=row.price_per_usd,
        discount_percent=percent,
        discount_source=source,
        tier=tier,
        amount_minor=charge_minor(
            credit=credit,
            price_per_usd=row.price_per_usd,
            discount_percent=percent,
            currency=row.currency,
        ),
        full_amount_minor=charge_minor(
            credit=credit,
            price_per_usd=row.price_per_usd,
            discount_percent=Decimal(0),
            currency=row.currency,
        ),
        next_tier=next_tier,
    )
