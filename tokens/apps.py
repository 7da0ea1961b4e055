from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TokensConfig(AppConfig):
    """Managing API tokens: the console pages, the REST API, the services and reads.

    No models (the Token model is in accounts, with authentication); this app sits above
    billing because deleting a token gives back what billing holds for it.
    """

    name = "tokens"
    verbose_name = _("API tokens")
