"""Demo recharge discounts for `make run`: a tier ladder and one personal discount.

Seeded once: tiers only while there are none, the personal discount only while no
customer has one, so an operator's own ladder is never added to or changed.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction

from billing.models import RechargeTier, UserDiscount
from billing.services import recharge_tier_create, user_discount_set
from core.money import MICRO_PER_USD

# (kind, threshold in USD, percent off). Single: one top-up of at least that much;
# lifetime: once a customer's top-ups add up to that much, every later one.
DEMO_TIERS = [
    (RechargeTier.Kind.SINGLE, 50, Decimal("5")),
    (RechargeTier.Kind.SINGLE, 200, Decimal("10")),
    (RechargeTier.Kind.LIFETIME, 1000, Decimal("12")),
]
# Below the first single tier, so the quote shows each source winning in turn.
DEMO_PERSONAL_PERCENT = Decimal("3")
DEMO_PERSONAL_NOTE = "Demo: a discount agreed with one customer (make run)"


@dataclass(frozen=True)
class DemoDiscounts:
    tiers_created: int
    personal_for: str  # the email of the user given the personal discount, or ""


@transaction.atomic
def load_demo_discounts() -> DemoDiscounts:
    """Create the demo tiers and personal discount unless discounts were set up already.

    The personal discount goes to the first superuser (the admin account `make run`
    creates and signs in with), so the recharge page shows it.
    """
    tiers_created = 0
    if not RechargeTier.objects.exists():
        for kind, threshold_usd, percent in DEMO_TIERS:
            recharge_tier_create(
                kind=kind, threshold=threshold_usd * MICRO_PER_USD, discount_percent=percent
            )
            tiers_created += 1
    personal_for = ""
    if not UserDiscount.objects.exists():
        admin = get_user_model().objects.filter(is_superuser=True).order_by("pk").first()
        if admin is not None:
            user_discount_set(
                user=admin, discount_percent=DEMO_PERSONAL_PERCENT, note=DEMO_PERSONAL_NOTE
            )
            personal_for = admin.email
    return DemoDiscounts(tiers_created=tiers_created, personal_for=personal_for)
