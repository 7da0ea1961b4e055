from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_save
from django.utils.translation import gettext_lazy as _


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = _("Billing")

    def ready(self) -> None:
        from billing.services import account_create_for_new_user

        # Every way a user comes to exist (sign-up, admin, createsuperuser, a
        # script) must give them an account, so this hooks the model, not a view.
        post_save.connect(
            account_create_for_new_user,
            sender=settings.AUTH_USER_MODEL,
            dispatch_uid="billing_account_for_new_user",
        )
