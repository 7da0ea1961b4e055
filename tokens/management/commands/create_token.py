from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import user_by_email
from core.money import AmountError, usd_to_micro
from tokens.services import token_create


class Command(BaseCommand):
    help = "Create an API token for a user and print its key once, on its own line."

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument("name")
        parser.add_argument(
            "--quota", help="Quota in USD; omit for unlimited, 0 for a query-only token."
        )

    def handle(self, *args, **options) -> None:
        user = user_by_email(email=options["email"])
        if user is None:
            raise CommandError(f"No user with the email {options['email']}.")
        name = options["name"].strip()
        if not name or len(name) > 100:
            raise CommandError("The token name must be 1 to 100 characters.")
        quota = None
        if options["quota"] is not None:
            try:
                quota = usd_to_micro(options["quota"])
            except AmountError as error:
                raise CommandError(str(error)) from error
            if quota < 0:
                raise CommandError("A quota cannot be negative.")
        try:
            _token, raw_key = token_create(user=user, name=name, quota_remaining=quota)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        self.stdout.write(raw_key)
