"""`load_demo_discounts`, run by `make run`: the demo tier ladder and a personal discount."""

from decimal import Decimal

import pytest
from django.core.management import call_command

from billing.models import RechargeTier, UserDiscount
from billing.pricing import recharge_quote
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

USD = 1_000_000


def _ladder() -> list[tuple[str, int, Decimal]]:
    return list(
        RechargeTier.objects.order_by("kind", "threshold").values_list(
            "kind", "threshold", "discount_percent"
        )
    )


def test_it_seeds_single_and_lifetime_tiers_and_the_admins_discount_once(capsys):
    customer = UserFactory()
    admin = StaffFactory()

    call_command("load_demo_discounts")
    first = _ladder()
    call_command("load_demo_discounts")

    assert first == [
        ("lifetime", 1000 * USD, Decimal("12.00")),
        ("single", 50 * USD, Decimal("5.00")),
        ("single", 200 * USD, Decimal("10.00")),
    ]
    assert _ladder() == first
    [personal] = UserDiscount.objects.all()
    assert (personal.user, personal.discount_percent) == (admin, Decimal("3.00"))
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"Demo discounts: 3 tiers created, a personal discount for {admin.email}.",
        "Demo discounts: discounts are set up already; nothing changed.",
    ]
    # The seeded tiers price top-ups: each source wins somewhere on the ladder.
    assert recharge_quote(user_id=customer.pk, credit=49 * USD).discount_percent == 0
    assert recharge_quote(user_id=customer.pk, credit=50 * USD).discount_percent == 5
    assert recharge_quote(user_id=admin.pk, credit=10 * USD).discount_source == "user"
    assert recharge_quote(user_id=admin.pk, credit=200 * USD).discount_percent == 10


def test_an_operators_own_discounts_are_left_alone():
    StaffFactory()
    customer = UserFactory()
    RechargeTier.objects.create(kind="single", threshold=75 * USD, discount_percent=Decimal(4))
    UserDiscount.objects.create(user=customer, discount_percent=Decimal(20))

    call_command("load_demo_discounts")

    assert _ladder() == [("single", 75 * USD, Decimal("4.00"))]
    assert list(UserDiscount.objects.values_list("user", "discount_percent")) == [
        (customer.pk, Decimal("20.00"))
    ]


def test_without_an_admin_only_the_tiers_are_seeded():
    call_command("load_demo_discounts")

    assert RechargeTier.objects.count() == 3
    assert not UserDiscount.objects.exists()
