from django.apps import AppConfig


class ModelsCatalogConfig(AppConfig):
    name = "models_catalog"
    verbose_name = "Model catalog"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the cache invalidation)
