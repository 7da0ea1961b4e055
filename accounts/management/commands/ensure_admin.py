import secrets

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction


class Command(BaseCommand):
    help = (
        "Create the first admin account with a random password, printed once. "
        "Does nothing when a superuser already exists."
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", default="admin@comet.localhost")

    def handle(self, *args, email: str, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            user = User.objects.create_superuser(email=email, password=password)
            # Mandatory verification would lock the admin out of its own site.
            EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
        line = "-" * 64
        self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS("Admin account created (shown this once):"))
        self.stdout.write(f"  email:    {email}")
        self.stdout.write(f"  password: {password}")
        self.stdout.write(line)
