from django.core.management.base import BaseCommand, CommandError

from billing.selectors import books_drift


class Command(BaseCommand):
    help = (
        "Check every account (balance = Σ ledger - Σ request costs since the last usage "
        "settlement; reserved = Σ open reservations) and every token (used, reserved). "
        "Print each drift and exit non-zero if there is any."
    )

    def handle(self, *args, **options) -> None:
        drifts = books_drift()
        for drift in drifts:
            self.stdout.write(str(drift))
        if drifts:
            raise CommandError(f"{len(drifts)} drift(s) found.")
        self.stdout.write(self.style.SUCCESS("The books close: no drift."))
