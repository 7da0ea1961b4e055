import logging

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import OuterRef, Q, Subquery
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext, ngettext

from accounts.locale import recipient_locale, user_language
from billing.alerts import low_balance_email_send, token_quota_alert_email_send
from billing.grants import grant_release_expired
from billing.models import OrderEvent, RechargeOrder
from billing.recharge import order_credit, orders_needing_notice, orders_sweep
from billing.services import account_debt_email_send, log_retention_run
from core.links import public_url
from core.money import format_minor, format_usd

logger = logging.getLogger(__name__)


@shared_task
def grant_release_expired_task() -> int:
    """Free the grants whose lease passed (the relay process holding them died)."""
    return grant_release_expired()


@shared_task(
    autoretry_for=(Exception,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
)
def order_credit_task(order_id: int) -> bool:
    """Credit a paid order; a second run (or a run after another path credited) does nothing."""
    return order_credit(order_id=order_id)


@shared_task
def recharge_orders_sweep_task() -> int:
    """Re-enqueue paid-but-uncredited orders; tell admins about orders needing attention."""
    order_ids = orders_sweep()
    for order_id in order_ids:
        order_credit_task.delay(order_id)
    notice = orders_needing_notice()
    if notice:
        orders_attention_email_task.delay(notice)
    return len(order_ids)


@shared_task(autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def orders_attention_email_task(order_ids: list[int]) -> None:
    """Email everyone who may credit orders by hand about orders needing attention."""
    permission = Q(codename="credit_order_manually", content_type__app_label="billing")
    allowed = Permission.objects.filter(permission)
    staff = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(user_permissions__in=allowed)
            | Q(groups__permissions__in=allowed)
        )
        .exclude(email="")
        .only("email", "language")
        .distinct()
    )
    # One email per language, to everyone who reads it.
    recipients: dict[str, list[str]] = {}
    for person in staff:
        recipients.setdefault(user_language(person), []).append(person.email)
    if not recipients:
        logger.warning("Orders need attention but nobody may credit them: %s", order_ids)
        return
    latest_event = OrderEvent.objects.filter(order=OuterRef("pk")).order_by("-at", "-id")
    orders = list(
        RechargeOrder.objects.filter(pk__in=order_ids)
        .select_related("user")
        .annotate(why=Subquery(latest_event.values("message")[:1]))
        .order_by("pk")
    )
    admin_url = public_url("/admin/billing/rechargeorder/?attention=yes")
    for language, emails in sorted(recipients.items()):
        with translation.override(language):
            lines = [
                gettext("%(order)s: %(credit)s for %(email)s, %(charged)s (%(status)s)")
                % {
                    "order": order.number,
                    "credit": format_usd(order.credit),
                    "email": order.user.email,
                    "charged": format_minor(order.amount_minor, order.currency),
                    "status": order.get_status_display(),
                }
                + f"\n  {order.why}\n"
                f"  {settings.COMET_PUBLIC_URL}/admin/billing/rechargeorder/{order.pk}/change/"
                for order in orders
            ]
            subject = ngettext(
                "%(count)s recharge order needs attention",
                "%(count)s recharge orders need attention",
                len(lines),
            ) % {"count": len(lines)}
            send_mail(
                subject=f"[{settings.COMET_SITE_NAME}] {subject}",
                message=gettext(
                    "These orders need a person: paid but not credited, a payment that did "
                    "not match, or a Stripe event about them that could not be read:"
                )
                + "\n\n"
                + "\n".join(lines)
                + "\n\n"
                + gettext("Check the payment in Stripe, then act by hand: %(url)s")
                % {"url": admin_url}
                + "\n",
                from_email=None,
                recipient_list=emails,
            )


@shared_task(autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def order_receipt_send_task(order_id: int) -> None:
    """Email the receipt of a credited order, once (the claim is a conditional UPDATE)."""
    claimed = RechargeOrder.objects.filter(
        pk=order_id, ledger_entry__isnull=False, receipt_sent_at__isnull=True
    ).update(receipt_sent_at=timezone.now())
    if not claimed:
        return
    order = RechargeOrder.objects.select_related("user").get(pk=order_id)
    context = {
        "order": order,
        "credit": format_usd(order.credit),
        "charged": format_minor(order.amount_minor, order.currency),
        "site_name": settings.COMET_SITE_NAME,
        "orders_url": public_url(reverse("billing:orders")),
    }
    try:
        with recipient_locale(order.user):
            subject = gettext("Receipt for order %(order)s") % {"order": order.number}
            send_mail(
                subject=f"[{settings.COMET_SITE_NAME}] {subject}",
                message=render_to_string("emails/recharge_receipt.txt", context),
                from_email=None,
                recipient_list=[order.user.email],
            )
    except Exception:
        # Let the retry send it: give the claim back.
        with transaction.atomic():
            RechargeOrder.objects.filter(pk=order_id).update(receipt_sent_at=None)
        raise


@shared_task(autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def account_debt_email_task(account_id: int) -> None:
    """Tell a customer, once, that their account owes money."""
    account_debt_email_send(account_id=account_id)


@shared_task(autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def account_low_balance_email_task(account_id: int) -> bool:
    """Tell a customer, once per fall, that their balance fell below their threshold."""
    return low_balance_email_send(account_id=account_id)


@shared_task(autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def token_quota_alert_email_task(token_id: int) -> bool:
    """Tell a customer, once per fall, that a token's quota fell below its alert threshold."""
    return token_quota_alert_email_send(token_id=token_id)


@shared_task
def log_retention_task() -> int:
    """Fold old request costs into the ledger, then delete request log rows past
    LOG_RETENTION_DAYS (beat, 03:30 in PLATFORM_TIME_ZONE); return the rows deleted."""
    return log_retention_run().deleted_rows
