from typing import Any

from django.core.management.base import BaseCommand

from billing.demo import load_demo_discounts


class Command(BaseCommand):
    help = (
        "Seed demo recharge discounts: single and lifetime tiers, and a personal discount "
        "for the first admin (idempotent: does nothing once discounts exist)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = load_demo_discounts()
        if not result.tiers_created and not result.personal_for:
            self.stdout.write("Demo discounts: discounts are set up already; nothing changed.")
            return
        personal = (
            f"a personal discount for {result.personal_for}"
            if result.personal_for
            else "no personal discount"
        )
        self.stdout.write(f"Demo discounts: {result.tiers_created} tiers created, {personal}.")
