from django.conf import settings
from django.db import migrations


def create_missing_accounts(apps, schema_editor):
    """Give every user who existed before billing an empty account."""
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    Account = apps.get_model("billing", "Account")
    missing = User.objects.filter(account__isnull=True).values_list("pk", flat=True)
    Account.objects.bulk_create([Account(user_id=pk) for pk in missing], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0001_account_ledger_reservation"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Reversing leaves the accounts: they hold nothing that 0001's reversal cannot drop.
        migrations.RunPython(create_missing_accounts, migrations.RunPython.noop),
    ]
