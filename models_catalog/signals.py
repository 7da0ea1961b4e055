"""Keep the relay's cached prices true: any write of a model or a group drops its entry."""

from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from .models import CatalogModel, PricingGroup
from .selectors import (
    CALLABLE_NAMES_KEY,
    DEFAULT_GROUP_KEY,
    ENABLED_NAMES_KEY,
    LINE_DEFAULT_KEY,
    group_cache_key,
    line_cache_key,
    model_cache_key,
)


def _forget(keys: list[str]) -> None:
    cache.delete_many(keys)
    # A reader inside another transaction may re-cache the old row before this one
    # commits: forget again once the new prices are visible to everyone.
    transaction.on_commit(lambda: cache.delete_many(keys))


@receiver([post_save, post_delete], sender=CatalogModel)
def forget_cached_model(sender: type, instance: CatalogModel, **kwargs: Any) -> None:
    # Names are read-only once created (see the admin), so the name is the whole key.
    _forget([model_cache_key(instance.name), ENABLED_NAMES_KEY, CALLABLE_NAMES_KEY])


@receiver([post_save, post_delete], sender=PricingGroup)
def forget_cached_group(sender: type, instance: PricingGroup, **kwargs: Any) -> None:
    _forget(
        [
            group_cache_key(instance.pk),
            DEFAULT_GROUP_KEY,
            line_cache_key(instance.pk),
            LINE_DEFAULT_KEY,
        ]
    )


@receiver(m2m_changed, sender=PricingGroup.catalog_models.through)
def forget_cached_line(sender: type, instance: Any, action: str, **kwargs: Any) -> None:
    """A line's models changed (from either side: a group's list or a model's lines)."""
    if not action.startswith("post_"):
        return
    if isinstance(instance, PricingGroup):
        keys = [line_cache_key(instance.pk)]
    else:
        keys = [line_cache_key(pk) for pk in kwargs.get("pk_set") or ()]
        if action == "post_clear":
            keys = [line_cache_key(pk) for pk in PricingGroup.objects.values_list("pk", flat=True)]
    _forget([*keys, LINE_DEFAULT_KEY])
