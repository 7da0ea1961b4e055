from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from logs.rollups import rollup_rebuild


class Command(BaseCommand):
    help = (
        "Recompute the usage rollups, token IPs and channel hours from the raw request "
        "log rows (from --since, a date, or the oldest whole day still in the log)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--since", help="YYYY-MM-DD (UTC)")

    def handle(self, *args, **options) -> None:
        since = None
        if options["since"]:
            try:
                since = datetime.strptime(options["since"], "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError as error:
                raise CommandError("--since is a date: YYYY-MM-DD.") from error
        rows = rollup_rebuild(since=since)
        self.stdout.write(self.style.SUCCESS(f"Rollups rebuilt from {rows:,} rows."))
