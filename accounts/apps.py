from django.apps import AppConfig
from django.db.models.signals import post_save
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = _("Accounts")

    def ready(self) -> None:
        from accounts.models import User
        from accounts.services import token_cache_forget_for_user

        # Cached tokens carry whether their owner is active and the owner's pricing
        # group: whoever changes a user (admin, script), the relay must see it.
        post_save.connect(
            token_cache_forget_for_user, sender=User, dispatch_uid="accounts_token_cache_user"
        )
