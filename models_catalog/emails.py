"""Price-change emails: who gets one for a batch, what it says, and sending it once.

Idempotence and the duplicate bound
-----------------------------------
One `PriceChangeEmail` row per (batch, subscription), unique in the database, so fan-out
can run any number of times. A sender *claims* rows (pending → sending, with
`claimed_at`), sends each message, and marks that row `sent` right after the SMTP server
accepted it. A worker killed at any point loses no one: its claimed rows become claimable
again after `PRICE_CHANGE_EMAIL_LEASE_SECONDS` and the resume task re-enqueues them (and
re-runs the fan-out of a closed batch whose `fanned_out_at` is still empty). The
only message that can go out twice is one the server accepted before the row was marked:
**at most one duplicate per send task running when a worker dies**, i.e. at most the
worker's concurrency per killed worker.
"""

import functools
import logging
import smtplib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext, ngettext

from accounts.locale import user_language
from accounts.timezones import platform_time_zone, user_time_zone
from core.links import public_url
from core.times import format_in_zone, zone_name

from .display import change_lines
from .models import (
    PriceChange,
    PriceChangeBatch,
    PriceChangeEmail,
    PriceChangeSubscription,
    PricingGroup,
)

logger = logging.getLogger(__name__)

UNSUBSCRIBE_SALT = "models_catalog.price_change_unsubscribe"
BULK_INSERT_ROWS = 2000


class SendFailedError(Exception):
    """The SMTP server refused or could not be reached; the task retries later."""


def unsubscribe_token(subscription_id: int) -> str:
    return signing.Signer(salt=UNSUBSCRIBE_SALT).sign(str(subscription_id))


def subscription_id_from_token(token: str) -> int | None:
    """Return the subscription a signed unsubscribe token names, or None if forged."""
    try:
        return int(signing.Signer(salt=UNSUBSCRIBE_SALT).unsign(token))
    except (signing.BadSignature, ValueError):
        return None


@functools.cache
def _unsubscribe_path_template() -> str:
    return reverse("models_catalog:unsubscribe", args=["TOKEN"])


def unsubscribe_url(subscription_id: int) -> str:
    # reverse() once per process with a stand-in token: for 10,000 emails it adds up.
    path = _unsubscribe_path_template().replace("TOKEN", unsubscribe_token(subscription_id))
    return public_url(path)


def batch_changes(batch: PriceChangeBatch) -> list[PriceChange]:
    return list(
        batch.changes.exclude(status=PriceChange.Status.CANCELLED)
        .select_related("catalog_model__vendor", "pricing_group")
        .order_by("pk")
    )


def batch_announcement_text(*, batch: PriceChangeBatch) -> tuple[str, str]:
    """Return the title and Markdown body of a batch's price adjustment announcement."""
    changes = batch_changes(batch)
    if not changes:
        return (
            "Price adjustment withdrawn",
            "The price changes announced here were cancelled: prices stay as they were.",
        )
    names = sorted({change.target_name for change in changes})
    title = "Price adjustment: " + ", ".join(names[:3]) + (" and more" if len(names) > 3 else "")
    lines = ["Prices for the default group (other groups pay their multiplier on top).", ""]
    for change in changes:
        # Stored text, read by everyone: the platform's time, naming its zone.
        when = (
            f" — takes effect {format_in_zone(change.effective_at, platform_time_zone())}"
            if change.status == PriceChange.Status.SCHEDULED
            else ""
        )
        lines.append(f"**{change.target_name}**{when}")
        lines.append("")
        for line in change_lines(change):
            lines.append(f"- {line.label}: {line.old} → {line.new}")
        lines.append(f"- Why: {change.reason}")
        lines.append("")
    return title[:200], "\n".join(lines)


def _verified(subscriptions):
    verified = EmailAddress.objects.filter(
        user=OuterRef("user_id"), email__iexact=OuterRef("user__email"), verified=True
    )
    return subscriptions.filter(Exists(verified), is_active=True, user__is_active=True)


def matching_subscriptions(*, changes: list[PriceChange]):
    """Return the active, verified subscriptions that at least one change concerns."""
    model_ids = {c.catalog_model_id for c in changes if c.catalog_model_id}
    vendor_ids = {c.catalog_model.vendor_id for c in changes if c.catalog_model is not None}
    group_ids = {c.pricing_group_id for c in changes if c.pricing_group_id}
    scope = PriceChangeSubscription.Scope
    match = Q(pk__in=[])
    if model_ids:
        match |= Q(scope=scope.ALL)
        match |= Q(scope=scope.VENDORS, vendors__in=vendor_ids)
        match |= Q(scope=scope.MODELS, catalog_models__in=model_ids)
    if group_ids:
        # A group's multiplier changes every price its members pay.
        match |= Q(user__pricing_group_id__in=group_ids)
        if PricingGroup.objects.filter(pk__in=group_ids, is_default=True).exists():
            match |= Q(user__pricing_group__isnull=True)
    return _verified(PriceChangeSubscription.objects.filter(match)).distinct()


def changes_for(
    subscription: PriceChangeSubscription,
    changes: list[PriceChange],
    *,
    vendor_ids: set[int],
    model_ids: set[int],
    default_group_id: int | None,
) -> list[PriceChange]:
    """Return the changes of a batch in one subscriber's scope."""
    group_id = subscription.user.pricing_group_id or default_group_id
    scope = PriceChangeSubscription.Scope
    chosen = []
    for change in changes:
        if change.pricing_group_id:
            if change.pricing_group_id == group_id:
                chosen.append(change)
        elif (
            subscription.scope == scope.ALL
            or (
                subscription.scope == scope.VENDORS
                and change.catalog_model is not None
                and change.catalog_model.vendor_id in vendor_ids
            )
            or (subscription.scope == scope.MODELS and change.catalog_model_id in model_ids)
        ):
            chosen.append(change)
    return chosen


def price_change_emails_create(*, batch: PriceChangeBatch) -> int:
    """Create one pending email row per matching subscriber (again: no duplicates)."""
    changes = batch_changes(batch)
    if not changes:
        return 0
    ids = matching_subscriptions(changes=changes).values_list("pk", flat=True).iterator()
    created = 0
    chunk: list[PriceChangeEmail] = []
    for subscription_id in ids:
        chunk.append(PriceChangeEmail(batch=batch, subscription_id=subscription_id))
        if len(chunk) == BULK_INSERT_ROWS:
            created += len(PriceChangeEmail.objects.bulk_create(chunk, ignore_conflicts=True))
            chunk = []
    if chunk:
        created += len(PriceChangeEmail.objects.bulk_create(chunk, ignore_conflicts=True))
    return created


def unsent_email_chunks(
    *, batch_id: int | None = None, created_before: datetime | None = None
) -> list[list[int]]:
    """Return ids of emails still to send (pending, or claimed past the lease), in chunks."""
    lease_expired = timezone.now() - timedelta(seconds=settings.PRICE_CHANGE_EMAIL_LEASE_SECONDS)
    emails = PriceChangeEmail.objects.filter(
        Q(status=PriceChangeEmail.Status.PENDING)
        | Q(status=PriceChangeEmail.Status.SENDING, claimed_at__lt=lease_expired)
    )
    if batch_id is not None:
        emails = emails.filter(batch_id=batch_id)
    if created_before is not None:
        emails = emails.filter(created_at__lt=created_before)
    ids = list(emails.order_by("pk").values_list("pk", flat=True))
    size = settings.PRICE_CHANGE_EMAIL_CHUNK_SIZE
    return [ids[start : start + size] for start in range(0, len(ids), size)]


def _claim(email_ids: Iterable[int], *, now: datetime) -> list[int]:
    lease_expired = now - timedelta(seconds=settings.PRICE_CHANGE_EMAIL_LEASE_SECONDS)
    claimable = PriceChangeEmail.objects.filter(pk__in=list(email_ids)).filter(
        Q(status=PriceChangeEmail.Status.PENDING)
        | Q(status=PriceChangeEmail.Status.SENDING, claimed_at__lt=lease_expired)
    )
    with transaction.atomic():
        # Rows another sender is claiming right now are skipped, not waited for.
        ids = list(claimable.select_for_update(skip_locked=True).values_list("pk", flat=True))
        PriceChangeEmail.objects.filter(pk__in=ids).update(
            status=PriceChangeEmail.Status.SENDING, claimed_at=now, updated_at=now
        )
    return ids


# Stands in for a subscriber's unsubscribe link while the shared part of an email is
# rendered once per set of changes (10,000 subscribers of "all models" get the same list).
_LINK_PLACEHOLDER = "@@unsubscribe-url@@"


@dataclass(frozen=True)
class RenderedChanges:
    subject: str
    text: str
    html: str


def _target_name(change: PriceChange) -> str:
    if change.catalog_model_id:
        return change.catalog_model.name  # type: ignore[union-attr]
    return gettext("group %(name)s") % {"name": change.pricing_group.name}  # type: ignore[union-attr]


def render_changes(
    changes: list[PriceChange], language: str = "en", zone: tzinfo | None = None
) -> RenderedChanges:
    """Return an email's subject and bodies for a list of changes in `language`, times in
    `zone` (default: the platform's), without the personal link."""
    with translation.override(language), timezone.override(zone or platform_time_zone()):
        context = {
            "changes": [(change, _target_name(change), change_lines(change)) for change in changes],
            "unsubscribe_url": _LINK_PLACEHOLDER,
            "pricing_url": public_url(reverse("pricing")),
            "site_name": settings.COMET_SITE_NAME,
        }
        count = len({change.target_name for change in changes})
        subject = f"[{settings.COMET_SITE_NAME}] " + ngettext(
            "Price changes for %(count)s model", "Price changes for %(count)s models", count
        ) % {"count": count}
        return RenderedChanges(
            subject=subject,
            text=render_to_string("emails/price_change.txt", context),
            html=render_to_string("emails/price_change.html", context),
        )


def build_message(
    *,
    subscription: PriceChangeSubscription,
    changes: list[PriceChange],
    connection=None,
    rendered: RenderedChanges | None = None,
) -> EmailMultiAlternatives:
    """Return the HTML + text email listing a subscriber's changes, in their language."""
    rendered = rendered or render_changes(
        changes, user_language(subscription.user), user_time_zone(subscription.user)
    )
    unsubscribe = unsubscribe_url(subscription.pk)
    message = EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.text.replace(_LINK_PLACEHOLDER, unsubscribe),
        to=[subscription.user.email],
        connection=connection,
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated",
        },
    )
    # The link is a signed token and a host from settings: nothing in it needs escaping.
    message.attach_alternative(rendered.html.replace(_LINK_PLACEHOLDER, unsubscribe), "text/html")
    return message


def _mark_sent(email_id: int) -> None:
    # One small UPDATE per email, written by hand: at 10,000 emails the ORM's own cost
    # per query shows, and marking each email alone is what bounds the duplicates.
    now = timezone.now()
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {PriceChangeEmail._meta.db_table} "  # noqa: S608  (our table name)
            "SET status = %s, sent_at = %s, updated_at = %s, attempts = attempts + 1 "
            "WHERE id = %s",
            [PriceChangeEmail.Status.SENT, now, now, email_id],
        )


def price_change_emails_send(*, email_ids: Iterable[int], now: datetime | None = None) -> int:
    """Claim and send the given emails; return how many were sent.

    Raise SendFailedError when SMTP fails: rows not yet sent go back to pending.
    """
    now = now or timezone.now()
    claimed = _claim(email_ids, now=now)
    if not claimed:
        return 0
    emails = list(
        PriceChangeEmail.objects.filter(pk__in=claimed)
        .select_related("subscription__user", "batch")
        .prefetch_related("subscription__vendors", "subscription__catalog_models")
        .order_by("pk")
    )
    default_group_id = (
        PricingGroup.objects.filter(is_default=True).values_list("pk", flat=True).first()
    )
    changes_by_batch: dict[int, list[PriceChange]] = {}
    # Rendered once per language, time zone and set of changes, not once per subscriber.
    rendered: dict[tuple[str, str, tuple[int, ...]], RenderedChanges] = {}
    sent = 0
    connection = get_connection()
    try:
        connection.open()
        for email in emails:
            if email.batch_id not in changes_by_batch:
                changes_by_batch[email.batch_id] = batch_changes(email.batch)
            subscription = email.subscription
            chosen = changes_for(
                subscription,
                changes_by_batch[email.batch_id],
                vendor_ids={vendor.pk for vendor in subscription.vendors.all()},
                model_ids={model.pk for model in subscription.catalog_models.all()},
                default_group_id=default_group_id,
            )
            if not (chosen and subscription.is_active):
                PriceChangeEmail.objects.filter(pk=email.pk).update(
                    status=PriceChangeEmail.Status.SKIPPED, updated_at=timezone.now()
                )
                continue
            language = user_language(subscription.user)
            zone = user_time_zone(subscription.user)
            key = (language, zone_name(zone), tuple(change.pk for change in chosen))
            if key not in rendered:
                rendered[key] = render_changes(chosen, language, zone)
            build_message(
                subscription=subscription,
                changes=chosen,
                connection=connection,
                rendered=rendered[key],
            ).send()
            # Marked right after the server accepted it: the window for a duplicate.
            _mark_sent(email.pk)
            sent += 1
    except (smtplib.SMTPException, OSError) as error:
        PriceChangeEmail.objects.filter(
            pk__in=claimed, status=PriceChangeEmail.Status.SENDING
        ).update(
            status=PriceChangeEmail.Status.PENDING,
            claimed_at=None,
            attempts=F("attempts") + 1,
            last_error=str(error)[:300],
            updated_at=timezone.now(),
        )
        raise SendFailedError(str(error)) from error
    finally:
        connection.close()
    return sent


def price_change_emails_fail(*, email_ids: Iterable[int], error: str) -> int:
    """Give up on emails after the last retry; return how many were marked failed."""
    return PriceChangeEmail.objects.filter(
        pk__in=list(email_ids), status=PriceChangeEmail.Status.PENDING
    ).update(
        status=PriceChangeEmail.Status.FAILED, last_error=error[:300], updated_at=timezone.now()
    )
