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
CALLABLE_NAMES_KEY = "models_catalog:callable_names"
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
    # Prices per unit (`models_catalog.pricing`): a table of micro-USD per image by size
    # and quality, micro-USD per 1M characters, per minute.
    price_per_image: dict[str, int] | None = None
    price_per_million_characters: int | None = None
    price_per_minute: int | None = None


def model_cache_key(model_name: str) -> str:
    # Names come from API clients: hash them into a key any cache accepts.
    digest = hashlib.sha256(model_name.encode()).hexdigest()[:40]
    # "v3": rows with the prices per unit; a process of the release before reads
    # the old key and never a row of another shape.
    return f"models_catalog:model:v3:{digest}"


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
    "price_per_image",
    "price_per_million_characters",
    "price_per_minute",
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
    (
        name,
        kind,
        model_ratio,
        completion_ratio,
        cached_ratio,
        price_per_call,
        context,
        reserve,
        per_image,
        per_million_characters,
        per_minute,
    ) = row
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
        price_per_image=per_image,
        price_per_million_characters=per_million_characters,
        price_per_minute=per_minute,
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


def callable_model_names() -> list[str]:
    """Return the names of the enabled models that can be called (`/v1/models`): every
    one but those whose kind has no endpoint yet (`CatalogModel.COMING_SOON_KINDS`),
    sorted, cached."""
    names = cache.get(CALLABLE_NAMES_KEY)
    if names is None:
        names = list(
            CatalogModel.objects.filter(is_enabled=True)
            .exclude(kind__in=CatalogModel.COMING_SOON_KINDS)
            .order_by("name")
            .values_list("name", flat=True)
        )
        cache.set(CALLABLE_NAMES_KEY, names, CACHE_SECONDS)
    return names


LINE_DEFAULT_KEY = "models_catalog:line:default"


def line_cache_key(pricing_group_id: int) -> str:
    return f"models_catalog:line:{pricing_group_id}"


@dataclass(frozen=True)
class Line:
    """What the relay needs of a line (a pricing group): the models it may call and the
    limits of each of its accounts (None: no limit)."""

    id: int
    name: str
    display_name: str
    allows_all_models: bool
    model_names: frozenset[str]
    concurrency_limit: int
    rpm_limit: int | None
    tpm_limit: int | None

    def allows_model(self, model_name: str) -> bool:
        return self.allows_all_models or model_name in self.model_names


@dataclass(frozen=True)
class AccountLimits:
    """An account's limits: its own where an admin set them, else its line's."""

    concurrency_limit: int
    rpm_limit: int | None
    tpm_limit: int | None
    # The names of the limits the account has of its own (shown as such in the console).
    overridden: frozenset[str] = frozenset()


def account_limits(
    line: Line,
    *,
    concurrency_limit: int | None,
    rpm_limit: int | None,
    tpm_limit: int | None,
) -> AccountLimits:
    """Return an account's limits from its own (None: not set) and its line's."""
    own = {"concurrency_limit": concurrency_limit, "rpm_limit": rpm_limit, "tpm_limit": tpm_limit}
    return AccountLimits(
        concurrency_limit=concurrency_limit or line.concurrency_limit,
        rpm_limit=rpm_limit or line.rpm_limit,
        tpm_limit=tpm_limit or line.tpm_limit,
        overridden=frozenset(name for name, value in own.items() if value is not None),
    )


def user_account_limits(user: User) -> AccountLimits:
    """Return the limits of `user`'s account (their line's, where they have none of their own)."""
    return account_limits(
        line_of(pricing_group_id=user.pricing_group_id),
        concurrency_limit=user.concurrency_limit,
        rpm_limit=user.rpm_limit,
        tpm_limit=user.tpm_limit,
    )


def _line_load(pricing_group_id: int | None) -> Line | None:
    groups = PricingGroup.objects.all()
    group = (
        groups.filter(pk=pricing_group_id).first() if pricing_group_id else None
    ) or groups.filter(is_default=True).first()
    if group is None:
        return None
    names: frozenset[str] = frozenset()
    if not group.allows_all_models:
        names = frozenset(group.catalog_models.values_list("name", flat=True))
    return Line(
        id=group.pk,
        name=group.name,
        display_name=group.display_name or group.name,
        allows_all_models=group.allows_all_models,
        model_names=names,
        concurrency_limit=group.concurrency_limit,
        rpm_limit=group.rpm_limit,
        tpm_limit=group.tpm_limit,
    )


# Only before the default group's migration has run (a fresh database): every model,
# the default limits.
_NO_LINE = Line(
    id=0,
    name="default",
    display_name="Default",
    allows_all_models=True,
    model_names=frozenset(),
    concurrency_limit=PricingGroup._meta.get_field("concurrency_limit").default,
    rpm_limit=None,
    tpm_limit=None,
)


def line_of(*, pricing_group_id: int | None) -> Line:
    """Return the line of a group (the default line for None or a group gone), cached.

    Any write of a group or of its models deletes the entry (`models_catalog.signals`).
    """
    key = line_cache_key(pricing_group_id) if pricing_group_id else LINE_DEFAULT_KEY
    line = cache.get(key)
    if line is None:
        line = _line_load(pricing_group_id) or _NO_LINE
        cache.set(key, line, CACHE_SECONDS)
    return line


async def aline_of(*, pricing_group_id: int | None) -> Line:
    """Return the line of a group, cached (async twin of `line_of`)."""
    key = line_cache_key(pricing_group_id) if pricing_group_id else LINE_DEFAULT_KEY
    line = await cache.aget(key)
    if line is None:
        line = await run_in_database_thread(_line_load, pricing_group_id) or _NO_LINE
        await cache.aset(key, line, CACHE_SECONDS)
    return line


def line_model_names(line: Line) -> list[str]:
    """Return the names of the enabled models `line` may call, sorted."""
    return [name for name in enabled_model_names() if line.allows_model(name)]


def default_pricing_group() -> PricingGroup:
    """Return the default group. A migration creates it; should it be gone (deleted in the
    admin, a flushed database), an unsaved ratio-1 group stands in, as the relay prices
    and admits a caller without a group (`_NO_LINE`)."""
    group = PricingGroup.objects.filter(is_default=True).first()
    if group is None:
        group = PricingGroup(name="default", display_name="Default", group_ratio=1, is_default=True)
    return group


def pricing_group_of(user: User | AnonymousUser) -> PricingGroup:
    """Return the group a visitor is priced by: theirs, or the default one."""
    group_id = getattr(user, "pricing_group_id", None) if user.is_authenticated else None
    if group_id:
        group = PricingGroup.objects.filter(pk=group_id).first()
        if group is not None:
            return group
    return default_pricing_group()


def catalog_model_list(
    *,
    search: str = "",
    vendor: str = "",
    kind: str = "",
    include_disabled: bool = False,
    line: PricingGroup | None = None,
) -> QuerySet[CatalogModel]:
    """Return catalog models matching the pricing page's search and filters; with `line`,
    only those the line may call."""
    models = CatalogModel.objects.select_related("vendor").order_by("vendor__display_name", "name")
    if line is not None and not line.allows_all_models:
        models = models.filter(lines=line)
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


def pricing_group_names() -> tuple[dict[int, str], int | None]:
    """Map every pricing group to its name, and say which is the default: one query."""
    rows = list(PricingGroup.objects.values_list("pk", "name", "display_name", "is_default"))
    default = next((row[0] for row in rows if row[3]), None)
    return {pk: display_name or name for pk, name, display_name, _ in rows}, default
