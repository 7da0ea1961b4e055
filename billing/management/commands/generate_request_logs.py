import time

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from billing.log_generator import request_logs_generate
from core.money import format_usd


class Command(BaseCommand):
    help = (
        "Generate N realistic request log rows for a user (created if missing), and "
        "optionally for other users around it, over the last --days days. Balances and "
        "tokens are charged and credited so `reconcile` stays clean; rollups are rebuilt."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("count", type=int, help="Rows in all (the user's and the others').")
        parser.add_argument("--user", required=True, help="Email of the busy user.")
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--tokens", type=int, default=5, help="Tokens of the busy user.")
        parser.add_argument("--other-users", type=int, default=0, help="How many other users.")
        parser.add_argument(
            "--other-share", type=float, default=0.1, help="Share of rows of the other users."
        )
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args, **options) -> None:
        if options["count"] <= 0:
            raise CommandError("COUNT must be a positive number of rows.")
        if not 0 <= options["other_share"] < 1:
            raise CommandError("--other-share is a fraction from 0 to below 1.")
        user = User.objects.filter(email__iexact=options["user"]).first()
        if user is None:
            user = User.objects.create_user(email=options["user"].lower(), password=None)
        others = []
        for index in range(options["other_users"]):
            email = f"generated-other-{index + 1}@example.com"
            other = User.objects.filter(email=email).first()
            others.append(other or User.objects.create_user(email=email, password=None))
        started = time.monotonic()
        try:
            totals = request_logs_generate(
                count=options["count"],
                user=user,
                days=options["days"],
                tokens=options["tokens"],
                others=others,
                other_share=options["other_share"] if others else 0.0,
                seed=options["seed"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"{totals.rows:,} rows in {elapsed:.1f} s; {user.email}: "
                f"{totals.rows_by_user[user.pk]:,} rows, "
                f"{format_usd(totals.cost_by_user[user.pk])}."
            )
        )
