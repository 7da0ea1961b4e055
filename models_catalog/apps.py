from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ModelsCatalogConfig(AppConfig):
    name = "models_catalog"
    verbose_name = _("Model catalog")

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the cache invalidation)
