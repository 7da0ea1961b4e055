from django.core.management.base import BaseCommand, CommandError

from relay.services import channel_keys_reencrypt


class Command(BaseCommand):
    help = (
        "Encrypt every channel's stored API key with the current SECRET_KEY (after a "
        "rotation, while the old key is in SECRET_KEY_FALLBACKS). Safe to run again; "
        "prints counts, never a key. Fails when a key opens with no configured key."
    )

    def handle(self, *args, **options) -> None:
        report = channel_keys_reencrypt()
        self.stdout.write(
            f"Channel API keys: {report.reencrypted} re-encrypted with the current SECRET_KEY, "
            f"{report.already_current} already current, {report.without_key} without a key, "
            f"{len(report.unreadable)} unreadable."
        )
        if report.unreadable:
            raise CommandError(
                "No configured SECRET_KEY opens the API key of: "
                + ", ".join(report.unreadable)
                + ". Keep the old key in SECRET_KEY_FALLBACKS and run this again, "
                "or enter these keys again in the admin."
            )
