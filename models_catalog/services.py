"""Writes of the catalog. Every price change goes through `price_change_record`.

The admin's change form, its list editing and the JSON import all call it: it checks
the permission and the reason, records old → new, applies the change now or schedules
it, and adds it to the open batch whose announcement and emails tell subscribers.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from accounts.models import AuditEvent, User
from accounts.services import audit_record
from core.inputs import storable_text_problem

from .models import (
    CatalogModel,
    PriceChange,
    PriceChangeBatch,
    PriceChangeSubscription,
    PricingGroup,
)
from .pricing import MAX_UNIT_PRICE, image_price_table_problem

CHANGE_PRICES_PERMISSION = "models_catalog.change_prices"
MODEL_PRICE_FIELDS = CatalogModel.PRICE_FIELDS
# Prices in whole micro-USD (the others are ratios, and the image price table).
MICRO_USD_PRICE_FIELDS = ("price_per_call", "price_per_million_characters", "price_per_minute")
MICRO_USD_PRICE_NAMES = {
    "price_per_call": gettext_noop("the price per call"),
    "price_per_million_characters": gettext_noop("the price per 1M characters"),
    "price_per_minute": gettext_noop("the price per minute"),
}
GROUP_PRICE_FIELDS = ("group_ratio",)
# Price changes made within this many seconds of each other go out as one email per
# subscriber; a scheduled change must be at least this far ahead, so subscribers hear
# of it before it takes effect. Ten minutes: an admin's editing session.
BATCH_WINDOW_SECONDS = 600


class PriceChangeError(ValueError):
    """A price change that cannot be made; the message says why, for a person."""


def batch_window() -> timedelta:
    return timedelta(seconds=BATCH_WINDOW_SECONDS)


def _price_fields(target: CatalogModel | PricingGroup) -> tuple[str, ...]:
    return MODEL_PRICE_FIELDS if isinstance(target, CatalogModel) else GROUP_PRICE_FIELDS


def _current_prices(target: CatalogModel | PricingGroup) -> dict[str, Any]:
    return {field: getattr(target, field) for field in _price_fields(target)}


def price_change_validate(
    *,
    target: CatalogModel | PricingGroup,
    new_prices: dict[str, Any],
    effective_at: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Return the target's full price state after the change, or raise PriceChangeError."""
    now = now or timezone.now()
    fields = _price_fields(target)
    unknown = set(new_prices) - set(fields)
    if unknown:
        raise PriceChangeError(
            _("Not a price field: %(fields)s.") % {"fields": ", ".join(sorted(unknown))}
        )
    state = {**_current_prices(target), **new_prices}
    for field in fields:
        value = state[field]
        if value is None:
            continue
        if field in MICRO_USD_PRICE_FIELDS:
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 0 < value <= MAX_UNIT_PRICE
            ):
                raise PriceChangeError(
                    _("%(target)s: %(price)s must be a whole number of micro-USD above 0.")
                    % {"target": target, "price": _(MICRO_USD_PRICE_NAMES[field])}
                )
        elif field == "price_per_image":
            problem = image_price_table_problem(value)
            if problem is not None:
                message, params = problem
                raise PriceChangeError(
                    _("%(target)s: the price per image %(problem)s.")
                    % {"target": target, "problem": _(message) % params}
                )
        elif not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
            raise PriceChangeError(
                _("%(target)s: %(field)s must be a number above 0.")
                % {"target": target, "field": field}
            )
        elif value.as_tuple().exponent < -6 or value >= Decimal("1000000"):  # type: ignore[operator]
            raise PriceChangeError(
                _("%(target)s: %(field)s may have at most 6 decimals and must be below 1,000,000.")
                % {"target": target, "field": field}
            )
    if isinstance(target, CatalogModel):
        if sum(state[field] is not None for field in CatalogModel.UNIT_FIELDS) != 1:
            raise PriceChangeError(
                _(
                    "%(target)s: a model is priced in exactly one unit: per token (model "
                    "ratio), per call, per image, per 1M characters or per minute."
                )
                % {"target": target}
            )
        if state["completion_ratio"] is None:
            raise PriceChangeError(
                _("%(target)s: the completion ratio cannot be empty.") % {"target": target}
            )
    if effective_at is not None and effective_at > now:
        earliest = now + batch_window()
        if effective_at < earliest:
            raise PriceChangeError(
                _(
                    "A scheduled change must be at least %(minutes)s minutes ahead, so that "
                    "subscribers are emailed before it takes effect. Leave the time empty to "
                    "change the price now."
                )
                % {"minutes": BATCH_WINDOW_SECONDS // 60}
            )
    elif effective_at is not None and effective_at < now - timedelta(minutes=1):
        raise PriceChangeError(_("A change cannot take effect in the past."))
    return state


def _open_batch(*, now: datetime) -> PriceChangeBatch:
    """Return the open batch, locked, creating it if there is none."""
    batch = PriceChangeBatch.objects.select_for_update().filter(status="open").first()
    if batch is not None:
        return batch
    try:
        with transaction.atomic():
            return PriceChangeBatch.objects.create(closes_at=now + batch_window())
    except IntegrityError:
        # Another change opened it a moment ago: join that one.
        return PriceChangeBatch.objects.select_for_update().get(status="open")


def _apply(target: CatalogModel | PricingGroup, state: dict[str, Any]) -> None:
    for field, value in state.items():
        setattr(target, field, value)
    target.save(update_fields=[*state, "updated_at"])


@transaction.atomic
def price_change_record(
    *,
    target: CatalogModel | PricingGroup,
    new_prices: dict[str, Any],
    reason: str,
    changed_by: User | None,
    source: str,
    effective_at: datetime | None = None,
    now: datetime | None = None,
) -> PriceChange | None:
    """Change a model's or a group's prices now or at `effective_at`; return the record.

    Return None when nothing would change. Raise PermissionError without the
    `change_prices` permission and PriceChangeError for a missing reason or bad prices.
    Only the demo catalog (`source` CATALOG, `load_demo_catalog`) changes a price with no
    person behind it (`changed_by` None): the record then says it was the catalog.
    """
    now = now or timezone.now()
    if changed_by is None:
        if source != PriceChange.Source.CATALOG:
            raise PermissionError("Only the demo catalog changes prices without a person.")
    elif not changed_by.has_perm(CHANGE_PRICES_PERMISSION):
        raise PermissionError("You may not change prices.")
    reason = reason.strip()
    if not reason:
        raise PriceChangeError(
            _("Give a reason for the price change: it is recorded and announced.")
        )
    problem = storable_text_problem(reason)
    if problem is not None:
        raise PriceChangeError(_("The reason %(problem)s.") % {"problem": problem})
    locked = type(target).objects.select_for_update().get(pk=target.pk)
    state = price_change_validate(
        target=locked, new_prices=new_prices, effective_at=effective_at, now=now
    )
    old = _current_prices(locked)
    if state == old:
        return None
    takes_effect = effective_at if effective_at is not None and effective_at > now else now
    is_scheduled = takes_effect > now
    change = PriceChange(
        reason=reason,
        source=source,
        changed_by=changed_by,
        status=PriceChange.Status.SCHEDULED if is_scheduled else PriceChange.Status.APPLIED,
        effective_at=takes_effect,
        applied_at=None if is_scheduled else now,
        batch=_open_batch(now=now),
    )
    _set_snapshot(change, locked, old=old, new=state)
    if not is_scheduled:
        _apply(locked, state)
    change.save()
    _announce(batch=change.batch, now=now)  # type: ignore[arg-type]
    return change


def _set_snapshot(
    change: PriceChange,
    target: CatalogModel | PricingGroup,
    *,
    old: dict[str, Any],
    new: dict[str, Any],
) -> None:
    if isinstance(target, CatalogModel):
        change.catalog_model = target
    else:
        change.pricing_group = target
    for field in _price_fields(target):
        setattr(change, f"old_{field}", old[field])
        setattr(change, f"new_{field}", new[field])


def price_changes_apply_due(*, now: datetime | None = None) -> int:
    """Apply every scheduled change whose time has come, each exactly once; return how many."""
    now = now or timezone.now()
    applied = 0
    due_ids = list(
        PriceChange.objects.filter(status=PriceChange.Status.SCHEDULED, effective_at__lte=now)
        .order_by("effective_at", "pk")
        .values_list("pk", flat=True)
    )
    for change_id in due_ids:
        with transaction.atomic():
            change = (
                PriceChange.objects.select_for_update(skip_locked=True)
                .filter(pk=change_id, status=PriceChange.Status.SCHEDULED)
                .first()
            )
            if change is None:  # Applied by another worker, or cancelled.
                continue
            target: CatalogModel | PricingGroup
            if change.catalog_model_id:
                target = CatalogModel.objects.select_for_update().get(pk=change.catalog_model_id)
            else:
                target = PricingGroup.objects.select_for_update().get(pk=change.pricing_group_id)  # type: ignore[misc]
            new = {field: getattr(change, f"new_{field}") for field in _price_fields(target)}
            # The history says what the price really was when this change replaced it.
            _set_snapshot(change, target, old=_current_prices(target), new=new)
            _apply(target, new)
            change.status = PriceChange.Status.APPLIED
            change.applied_at = now
            change.save()
            applied += 1
    return applied


@transaction.atomic
def price_change_cancel(*, change: PriceChange, cancelled_by: User) -> bool:
    """Cancel a scheduled change that has not been applied; return whether it was."""
    if not cancelled_by.has_perm(CHANGE_PRICES_PERMISSION):
        raise PermissionError("You may not change prices.")
    now = timezone.now()
    cancelled = PriceChange.objects.filter(
        pk=change.pk, status=PriceChange.Status.SCHEDULED
    ).update(status=PriceChange.Status.CANCELLED, updated_at=now)
    if cancelled and change.batch_id:
        # The public announcement must not keep promising a change that will not happen.
        batch = PriceChangeBatch.objects.select_for_update().get(pk=change.batch_id)
        _announce(batch=batch, now=now)
    return bool(cancelled)


def _announce(*, batch: PriceChangeBatch, now: datetime) -> None:
    """Publish (or rewrite) the batch's price adjustment announcement."""
    from announcements.models import Announcement
    from announcements.services import announcement_create, announcement_update_body

    from .emails import batch_announcement_text

    title, body = batch_announcement_text(batch=batch)
    if batch.announcement is None:
        batch.announcement = announcement_create(
            title=title,
            body_markdown=body,
            category=Announcement.Category.PRICE_ADJUSTMENT,
            published_at=now,
        )
        batch.save(update_fields=["announcement", "updated_at"])
    else:
        announcement_update_body(announcement=batch.announcement, title=title, body_markdown=body)


def catalog_model_update_details(*, catalog_model: CatalogModel, fields: Iterable[str]) -> None:
    """Save a model's descriptive fields (never its prices: see `price_change_record`)."""
    allowed = [field for field in fields if field not in MODEL_PRICE_FIELDS]
    if allowed:
        catalog_model.save(update_fields=[*allowed, "updated_at"])


# --- Emails -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    sent: int
    skipped: int


def price_change_batch_close(*, batch_id: int, now: datetime | None = None) -> bool:
    """Close a batch whose window has passed; return True only for the caller that closed it."""
    now = now or timezone.now()
    return bool(
        PriceChangeBatch.objects.filter(
            pk=batch_id, status=PriceChangeBatch.Status.OPEN, closes_at__lte=now
        ).update(status=PriceChangeBatch.Status.CLOSED, closed_at=now, updated_at=now)
    )


# What the audit log records of an admin's edit of a line. Its `group_ratio` is recorded
# by `price_change_record` in the price history (who, when, why, before and after).
LINE_AUDITED_FIELDS = (
    "name",
    "display_name",
    "description",
    "allows_all_models",
    "catalog_models",
    "concurrency_limit",
    "rpm_limit",
    "tpm_limit",
)


def line_edit_audit(
    *,
    line: PricingGroup,
    changes: dict[str, tuple[Any, Any]],
    created: bool,
    actor: User | None,
) -> bool:
    """Write the audit row of a line created or edited (its names, its models — as
    sorted names —, its default limits), in the transaction of the edit; return whether
    one was written.

    `changes` maps a field of `LINE_AUDITED_FIELDS` to (old, new); others are ignored.
    One row (`line.created` or `line.changed`) names each change as [old, new]; an edit
    that changes none of them writes nothing.
    """
    changed = {
        name: [old, new]
        for name, (old, new) in changes.items()
        if name in LINE_AUDITED_FIELDS and (created or old != new)
    }
    if not changed and not created:
        return False
    audit_record(
        action=AuditEvent.Action.LINE_CREATED if created else AuditEvent.Action.LINE_CHANGED,
        target=line,
        label=line.name,
        actor=actor,
        detail={"changed": changed},
    )
    return True


def catalog_entry_create(*, entry: CatalogModel | PricingGroup) -> None:
    """Create a model or a group with its first prices (a new entry is not a price change)."""
    entry.full_clean()
    entry.save()


# --- Subscriptions ----------------------------------------------------------------------


class SubscriptionError(ValueError):
    """A subscription that cannot be saved; the message says why, for a person."""


def has_verified_email(user: User) -> bool:
    from allauth.account.models import EmailAddress

    return EmailAddress.objects.filter(user=user, email__iexact=user.email, verified=True).exists()


@transaction.atomic
def price_change_subscription_save(
    *,
    user: User,
    scope: str,
    vendors: Iterable[Any] = (),
    catalog_models: Iterable[Any] = (),
) -> PriceChangeSubscription:
    """Subscribe a user with a verified email to price-change emails in a scope."""
    if not has_verified_email(user):
        raise SubscriptionError(
            _("Verify your email address first: we only email verified addresses.")
        )
    subscription, _created = PriceChangeSubscription.objects.select_for_update().get_or_create(
        user=user
    )
    subscription.scope = scope
    subscription.is_active = True
    subscription.save(update_fields=["scope", "is_active", "updated_at"])
    scopes = PriceChangeSubscription.Scope
    subscription.vendors.set(list(vendors) if scope == scopes.VENDORS else [])
    subscription.catalog_models.set(list(catalog_models) if scope == scopes.MODELS else [])
    return subscription


def price_change_subscription_cancel(*, subscription: PriceChangeSubscription) -> bool:
    """Stop price-change emails; return whether the subscription was active."""
    return bool(
        PriceChangeSubscription.objects.filter(pk=subscription.pk, is_active=True).update(
            is_active=False, updated_at=timezone.now()
        )
    )
