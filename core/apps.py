from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    """Helpers every app may use: money types and formatting, input checks, the API's
    error format, database threads, links, the client's address. No models; an app so
    its template filters (`{% load money %}`) load."""

    name = "core"
    verbose_name = _("Core")
