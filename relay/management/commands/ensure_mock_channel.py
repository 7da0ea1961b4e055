from django.core.management.base import BaseCommand

from relay.services import channel_ensure_mock


class Command(BaseCommand):
    help = (
        "Create (or bring up to date) the built-in mock channel serving every enabled "
        "model of the catalog, so a first request works offline. Safe to run again."
    )

    def handle(self, *args, **options):
        channel, served = channel_ensure_mock()
        self.stdout.write(f"Mock channel '{channel.name}' serves {served} models.")
