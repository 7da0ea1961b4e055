from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import user_by_email
from billing.services import LedgerError, account_adjust
from core.money import AmountError, format_usd, usd_to_micro


class Command(BaseCommand):
    help = "Credit a user's balance with a ledger adjustment (idempotent with --key)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument("usd", help="Amount in USD, e.g. 25 or 0.5")
        parser.add_argument("--reason", required=True, help="Why (kept in the ledger).")
        parser.add_argument(
            "--key", help="Idempotency key: the same key again changes nothing (e.g. a ticket id)."
        )

    def handle(self, *args, **options) -> None:
        user = user_by_email(email=options["email"])
        if user is None:
            raise CommandError(f"No user with the email {options['email']}.")
        try:
            amount = usd_to_micro(options["usd"])
        except AmountError as error:
            raise CommandError(str(error)) from error
        if amount <= 0:
            raise CommandError("The amount must be more than zero (a credit adds money).")
        key = options["key"]
        try:
            entry = account_adjust(
                user_id=user.pk,
                amount=amount,
                reason=options["reason"],
                created_by=None,
                idempotency_key=f"adjust:cli:{key}" if key else None,
            )
        except LedgerError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"{user.email}: {format_usd(entry.amount)} recorded as ledger entry {entry.pk}; "
            f"balance after it {format_usd(entry.balance_after)}."
        )
