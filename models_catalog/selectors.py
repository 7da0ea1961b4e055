"""Reads of the catalog: the relay's per-request price lookup and the pricing pages."""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import User
from core.db import run_in_database_thread

from .models import (
    CatalogModel,
    PriceChange,
    PriceChangeSubscription,
    PricingGroup,
    Vendor,
)

# Cached catalog entries live this long at most; every price change deletes them at once.
CACHE_SECONDS = 300
# An unknown model name is remembered briefly, so a client hammering a typo costs no query.
UNKNOWN_MODEL_CACHE_SECONDS = 30
_UNKNOWN = "unknown"
ENABLED_NAMES_KEY = "models_catalog:enabled_names"
DEFAULT_GROUP_KEY = "models_catalog:default_group"


@dataclass(frozen=True)
class ModelPrice:
    """What the relay needs to price one request of one model for one group."""

    model_name: str
    kind: str
    model_ratio: Decimal | None
    completion_ratio: Decimal
    cached_ratio: Decimal | None
    price_per_call: int | None
    group_ratio: Decimal
    context_window: int | None
    # Completion tokens a hold assumes without max_tokens (None: the relay's default).
    completion_reserve: int | None = None


def model_cache_key(model_name: str) -> str:
    # Names come from API clients: hash them into a key any cache accepts.
    digest = hashlib.sha256(model_name.encode()).hexdigest()[:40]
    # "v2": rows with the completion reserve; a process of the release before reads
    # the old key and never a row of another shape.
    return f"models_catalog:model:v2:{digest}"


def group_cache_key(pricing_group_id: int) -> str:
    return f"models_catalog:group:{pricing_group_id}"


_MODEL_FIELDS = (
    "name",
    "kind",
    "model_ratio",
    "completion_ratio",
    "cached_ratio",
    "price_per_call",
    "context_window",
    "completion_reserve",
)


def _model_row(model_name: str) -> tuple | None:
    return (
        CatalogModel.objects.filter(name=model_name, is_enabled=True)
        .values_list(*_MODEL_FIELDS)
        .first()
    )


async def _amodel_row(model_name: str) -> tuple | None:
    return await run_in_database_thread(_model_row, model_name)


def _build(row: tuple, group_ratio: Decimal) -> ModelPrice:
    name, kind, model_ratio, completion_ratio, cached_ratio, price_per_call, context, reserve = row
    return ModelPrice(
        model_name=name,
        kind=kind,
        model_ratio=model_ratio,
        completion_ratio=completion_ratio,
        cached_ratio=cached_ratio,
        price_per_call=price_per_call,
        group_ratio=group_ratio,
        context_window=context,
        completion_reserve=reserve,
    )


def _group_row(pricing_group_id: int | None) -> tuple[int, Decimal] | None:
    groups = PricingGroup.objects.all()
    groups = (
        groups.filter(pk=pricing_group_id) if pricing_group_id else groups.filter(is_default=True)
    )
    return groups.values_list("pk", "group_ratio").first()


async def _agroup_row(pricing_group_id: int | None) -> tuple[int, Decimal] | None:
    return await run_in_database_thread(_group_row, pricing_group_id)


def _group_key(pricing_group_id: int | None) -> str:
    return group_cache_key(pricing_group_id) if pricing_group_id else DEFAULT_GROUP_KEY


def group_ratio_of(*, pricing_group_id: int | None) -> Decimal:
    """Return the ratio of a group (the default group for None), cached."""
    key = _group_key(pricing_group_id)
    row: Any = cache.get(key)
    if row is None:
        row = _group_row(pricing_group_id) or _group_row(None)
        if row is None:
            return Decimal(1)
        cache.set(key, row, CACHE_SECONDS)
    return row[1]


async def agroup_ratio_of(*, pricing_group_id: int | None) -> Decimal:
    """Return the ratio of a group, cached (async twin of `group_ratio_of`)."""
    key = _group_key(pricing_group_id)
    row: Any = await cache.aget(key)
    if row is None:
        row = await _agroup_row(pricing_group_id) or await _agroup_row(None)
        if row is None:
            return Decimal(1)
        await cache.aset(key, row, CACHE_SECONDS)
    return row[1]


def model_price(*, model_name: str, pricing_group_id: int | None) -> ModelPrice | None:
    """Return the price of an enabled model for a group (None = default group).

    None for an unknown or disabled model. Cached in Redis; a price change deletes
    the entry when its transaction commits.
    """
    key = model_cache_key(model_name)
    row: Any = cache.get(key)
    if row is None:
        row = _model_row(model_name)
        cache.set(key, row or _UNKNOWN, CACHE_SECONDS if row else UNKNOWN_MODEL_CACHE_SECONDS)
    if row == _UNKNOWN or row is None:
        return None
    return _build(row, group_ratio_of(pricing_group_id=pricing_group_id))


async def amodel_price(*, model_name: str, pricing_group_id: int | None) -> ModelPrice | None:
    """Return the price of an enabled model for a group (async twin of `model_price`)."""
    key = model_cache_key(model_name)
    row: Any = await cache.aget(key)
    if row is None:
        row = await _amodel_row(model_name)
        await cache.aset(
            key, row or _UNKNOWN, CACHE_SECONDS if row else UNKNOWN_MODEL_CACHE_SECONDS
        )
    if row == _UNKNOWN or row is None:
        return None
    return _build(row, await agroup_ratio_of(pricing_group_id=pricing_group_id))


def enabled_model_names() -> list[str]:
    """Return the names of every enabled model, sorted, cached."""
    names = cache.get(ENABLED_NAMES_KEY)
    if names is None:
        names = list(
            CatalogModel.objects.filter(is_enabled=True)
            .order_by("name")
            .values_list("name", flat=True)
        )
        cache.set(ENABLED_NAMES_KEY, names, CACHE_SECONDS)
    return names


def default_pricing_group() -> PricingGroup:
    """Return the default group (created by a migration, so it always exists)."""
    return PricingGroup.objects.get(is_default=True)


def pricing_group_of(user: User | AnonymousUser) -> PricingGroup:
    """Return the group a visitor is priced by: theirs, or the default one."""
    group_id = getattr(user, "pricing_group_id", None) if user.is_authenticated else None
    if group_id:
        group = PricingGroup.objects.filter(pk=group_id).first()
        if group is not None:
            return group
    return default_pricing_group()


def catalog_model_list(
    *, search: str = "", vendor: str = "", kind: str = "", include_disabled: bool = False
) -> QuerySet[CatalogModel]:
    """Return catalog models matching the pricing page's search and filters."""
    models = CatalogModel.objects.select_related("vendor").order_by("vendor__display_name", "name")
    if not include_disabled:
        models = models.filter(is_enabled=True)
    if search:
        models = models.filter(Q(name__icontains=search) | Q(description__icontains=search))
    if vendor:
        models = models.filter(vendor__name=vendor)
    if kind:
        models = models.filter(kind=kind)
    return models


def vendor_list() -> QuerySet[Vendor]:
    """Return vendors that have at least one enabled model."""
    return Vendor.objects.filter(models__is_enabled=True).distinct().order_by("display_name")


def price_history(*, catalog_model: CatalogModel) -> QuerySet[PriceChange]:
    """Return a model's applied and scheduled price changes, newest first."""
    return (
        PriceChange.objects.filter(catalog_model=catalog_model)
        .exclude(status=PriceChange.Status.CANCELLED)
        .select_related("changed_by", "catalog_model", "batch")
        .order_by("-effective_at", "-pk")
    )


def scheduled_changes_due(*, now: datetime | None = None) -> QuerySet[PriceChange]:
    """Return scheduled changes whose time has come, oldest first."""
    return PriceChange.objects.filter(
        status=PriceChange.Status.SCHEDULED, effective_at__lte=now or timezone.now()
    ).order_by("effective_at", "pk")


def subscription_of(*, user: User) -> PriceChangeSubscription | None:
    """Return a user's price-change subscription, if they ever made one."""
    return (
        PriceChangeSubscription.objects.filter(user=user)
        .prefetch_related("vendors", "catalog_models")
        .first()
    )
