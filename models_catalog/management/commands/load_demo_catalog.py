from typing import Any

from django.core.management.base import BaseCommand

from models_catalog.demo_catalog import MODELS, load_demo_catalog


class Command(BaseCommand):
    help = "Load the demo model catalog (idempotent: existing models keep their prices)."

    def handle(self, *args: Any, **options: Any) -> None:
        created_models, created_groups = load_demo_catalog()
        self.stdout.write(
            f"Demo catalog: {created_models} of {len(MODELS)} models created, "
            f"{created_groups} pricing groups created."
        )
