from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import stripe
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from accounts.http import ConsoleRequest
from accounts.selectors import token_list
from accounts.tokens import key_is_well_formed, token_authenticate
from billing.alerts import account_low_balance_threshold_set
from billing.forms import LowBalanceAlertForm, RechargeAmountForm, RedeemForm
from billing.models import RechargeOrder, RechargeSettings, RechargeTier
from billing.pricing import recharge_quote, recharge_settings
from billing.recharge import (
    ATTENTION_SECONDS,
    Payment,
    RechargeError,
    code_redeem,
    order_create,
    order_mark_paid,
    order_mark_unsuccessful,
    order_session_attach,
)
from billing.selectors import (
    account_for_user,
    ledger_entry_list,
    order_list,
    recharge_tier_list,
    user_discount_for,
)
from billing.stripe_api import (
    PaymentUnavailable,
    checkout_session_create,
    checkout_session_retrieve,
    payments_enabled,
)
from billing.webhooks import stripe_event_receive
from core.api import error_response
from core.money import AmountError, format_usd, micro_to_json, micro_to_usd, usd_to_micro

LEDGER_PAGE_SIZE = 50
_CENT = Decimal("0.01")
# An order still unpaid this long after it was created shows how to reach support.
ORDER_SUPPORT_AFTER = timedelta(minutes=10)


@login_required
@require_GET
def billing_history(request: ConsoleRequest) -> HttpResponse:
    """List the user's ledger entries, newest first (a page of them for htmx)."""
    paginator = Paginator(ledger_entry_list(user_id=request.user.pk), LEDGER_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    context = {"page": page, "account": account_for_user(user_id=request.user.pk)}
    template = "billing/_history_table.html" if request.htmx else "billing/history.html"
    return render(request, template, context)


# Balance queries (`/user/quota`) one client address may make per minute (429 past it):
# a dashboard refreshing every few seconds stays under it, a key-guessing loop does not.
QUOTA_QUERIES_PER_MINUTE = 60
QUOTA_QUERY_WINDOW_SECONDS = 60


def _quota_query_over_limit(request: HttpRequest) -> bool:
    """Count this address's balance queries; say whether it went past the limit.

    Every query counts, a bad key too, so the endpoint cannot be used to guess keys
    quickly. The window opens at an address's first query and closes 60 s later.
    """
    key = f"quota-query:{request.META.get('REMOTE_ADDR', '')}"
    cache.add(key, 0, timeout=QUOTA_QUERY_WINDOW_SECONDS)
    try:
        count = cache.incr(key)
    except ValueError:  # The window closed between add and incr.
        cache.set(key, 1, timeout=QUOTA_QUERY_WINDOW_SECONDS)
        count = 1
    return count > QUOTA_QUERIES_PER_MINUTE


def _bearer_key(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.GET.get("key", "").strip()


@require_GET
def user_quota(request: HttpRequest) -> JsonResponse:
    """Answer the seed's balance query: the account and its tokens, amounts in USD.

    Works with any enabled, unexpired token of the account, query-only ones too.
    """
    if _quota_query_over_limit(request):
        response = error_response(
            gettext("Too many balance queries from this address; try again in a minute."),
            status_code=429,
            code="rate_limit_exceeded",
        )
        response["Retry-After"] = str(QUOTA_QUERY_WINDOW_SECONDS)
        return response
    raw_key = _bearer_key(request)
    if not raw_key:
        return error_response(
            gettext("Pass your API key as `Authorization: Bearer sk-...` or `?key=sk-...`."),
            status_code=401,
            code="invalid_api_key",
        )
    info = token_authenticate(raw_key) if key_is_well_formed(raw_key) else None
    if info is None or info.is_expired:
        return error_response(
            gettext("This API key is not valid: it is malformed, unknown, disabled or expired."),
            status_code=401,
            code="invalid_api_key",
        )
    account = account_for_user(user_id=info.user_id)
    tokens = token_list(user_id=info.user_id).only("name", "quota_remaining", "used")
    response = JsonResponse(
        {
            "username": account.user.get_short_name(),
            "total_quota": micro_to_json(account.balance),
            "total_used_quota": micro_to_json(account.used),
            "request_count": account.request_count,
            "keys": [
                {
                    "name": token.name,
                    "remain_quota": -1
                    if token.quota_remaining is None
                    # Past its quota a token is exhausted: 0, never a negative
                    # that could read as -1, unlimited.
                    else micro_to_json(max(0, token.quota_remaining)),
                    "used_quota": micro_to_json(token.used),
                }
                for token in tokens
            ],
        }
    )
    response["Cache-Control"] = "no-store"
    return response


# --- Recharge -----------------------------------------------------------------

PAYMENTS_OFF = gettext_noop(
    "Card payments are not set up on this server, so a top-up cannot be paid here yet. "
    "Redemption codes still work."
)

ORDER_PAGE_SIZE = 25
ORDER_FINAL = {
    RechargeOrder.Status.CREDITED,
    RechargeOrder.Status.FAILED,
    RechargeOrder.Status.EXPIRED,
    RechargeOrder.Status.REFUNDED,
}


def _presets(row: RechargeSettings) -> list[tuple[Decimal, int]]:
    """Return the preset amounts as (what the amount field takes, micro-USD shown)."""
    presets = []
    for preset in row.presets:
        try:
            presets.append((preset, usd_to_micro(preset)))
        except AmountError:
            continue  # an amount the form refuses too
    return presets


def _recharge_context(request: ConsoleRequest, **extra: Any) -> dict[str, Any]:
    row = recharge_settings()
    tiers = list(recharge_tier_list())
    personal = user_discount_for(user_id=request.user.pk)
    percents = [t.discount_percent for t in tiers]
    if personal is not None:
        percents.append(personal.discount_percent)
    return {
        "settings_row": row,
        "presets": _presets(row),
        "min_credit": usd_to_micro(row.min_credit_usd),
        "max_credit": usd_to_micro(row.max_credit_usd),
        "payments_enabled": payments_enabled(),
        "account": account_for_user(user_id=request.user.pk),
        "recent_orders": order_list(user_id=request.user.pk)[:5],
        "single_tiers": [t for t in tiers if t.kind == RechargeTier.Kind.SINGLE],
        "lifetime_tiers": [t for t in tiers if t.kind == RechargeTier.Kind.LIFETIME],
        "personal_discount": personal,
        "best_percent": max(percents, default=None),
        "redeem_form": RedeemForm(),
        "attention_after_minutes": ATTENTION_SECONDS // 60,
        **extra,
    }


def _amount_text(credit: int) -> str:
    """Return micro-USD as the amount field takes it: `25.50`."""
    return f"{micro_to_usd(credit):.2f}"


def _recharge_url(amount: str = "") -> str:
    """The recharge page, its amount field filled with `amount` when one is given."""
    url = reverse("console:recharge")
    return f"{url}?{urlencode({'amount': amount[:20]})}" if amount else url


@login_required
@require_GET
def recharge_page(request: ConsoleRequest) -> HttpResponse:
    """The recharge page: the discounts, presets, a live price of any amount, codes.

    `?amount=` fills the amount field (a top-up that could not be paid comes back
    with its amount); `?cancelled=<order>` is where Stripe's Checkout sends a
    customer who left it: their order's amount, and a note that nothing was charged.
    """
    row = recharge_settings()
    initial = str(row.presets[0]) if row.presets else str(row.min_credit_usd)
    cancelled = None
    if number := request.GET.get("cancelled", "")[:32]:
        cancelled = order_list(user_id=request.user.pk).filter(number=number).first()
        if cancelled is not None and cancelled.paid_at is None:
            initial = _amount_text(cancelled.credit)
        else:
            cancelled = None
    initial = request.GET.get("amount", "")[:20] or initial
    form = RechargeAmountForm({"amount": initial}, settings_row=row)
    quote = None
    if form.is_valid():
        quote = recharge_quote(
            user_id=request.user.pk, credit=form.cleaned_data["amount"], settings_row=row
        )
    context = _recharge_context(request, form=form, quote=quote, cancelled_order=cancelled)
    return render(request, "billing/recharge.html", context)


@login_required
@require_GET
def recharge_preview(request: ConsoleRequest) -> HttpResponse:
    """The price of an amount for this user (the htmx fragment under the amount field)."""
    row = recharge_settings()
    form = RechargeAmountForm(request.GET, settings_row=row)
    quote = None
    if form.is_valid():
        quote = recharge_quote(
            user_id=request.user.pk, credit=form.cleaned_data["amount"], settings_row=row
        )
    return render(request, "billing/_recharge_quote.html", {"form": form, "quote": quote})


@login_required
@require_POST
def recharge_checkout(request: ConsoleRequest) -> HttpResponse:
    """Create the order and send the browser to Stripe's Checkout for exactly its price."""
    row = recharge_settings()
    form = RechargeAmountForm(request.POST, settings_row=row)
    if not payments_enabled():
        messages.error(request, gettext(PAYMENTS_OFF))
        return HttpResponseRedirect(_recharge_url(request.POST.get("amount", "").strip()))
    if not form.is_valid():
        context = _recharge_context(request, form=form, quote=None)
        return render(request, "billing/recharge.html", context, status=400)
    order = order_create(user=request.user, credit=form.cleaned_data["amount"])
    order_url = request.build_absolute_uri(
        reverse("billing:order", kwargs={"number": order.number})
    )
    try:
        session = checkout_session_create(
            order=order,
            success_url=f"{order_url}?returned=1",
            # Back to the recharge page with the amount kept, not to a pending order.
            cancel_url=request.build_absolute_uri(
                f"{reverse('console:recharge')}?{urlencode({'cancelled': order.number})}"
            ),
            email=request.user.email,
        )
    except PaymentUnavailable as error:
        order_mark_unsuccessful(
            order_id=order.pk, status=RechargeOrder.Status.FAILED, message=str(error)
        )
        messages.error(request, str(error))
        return HttpResponseRedirect(_recharge_url(_amount_text(order.credit)))
    order_session_attach(order_id=order.pk, session_id=session.id)
    # 303: the browser follows with a GET to Stripe's hosted page.
    response = HttpResponseRedirect(session.url or order_url)
    response.status_code = 303
    return response


# The order page polls every 2 s; Stripe is asked about one order at most this often
# (an abandoned checkout stays pending for a day, and its tab may stay open).
STRIPE_ASK_INTERVAL_SECONDS = 10


def _order_ask_stripe(order: RechargeOrder) -> RechargeOrder:
    """Ask Stripe about a pending order's session, so the return page can mark it paid."""
    if order.paid_at is not None or not order.stripe_session_id or not payments_enabled():
        return order
    if order.status not in (RechargeOrder.Status.PENDING, RechargeOrder.Status.EXPIRED):
        return order
    if not cache.add(f"billing:order-asked:{order.pk}", 1, STRIPE_ASK_INTERVAL_SECONDS):
        return order
    try:
        session = checkout_session_retrieve(order.stripe_session_id)
    except PaymentUnavailable:
        return order
    if session.payment_status == "paid":
        payment = Payment(
            amount_minor=session.amount_total,
            currency=session.currency,
            livemode=session.livemode,
            payment_intent_id=session.payment_intent,
            source="return page",
        )
        return order_mark_paid(order_id=order.pk, payment=payment)
    return order


@login_required
@require_GET
def order_detail(request: ConsoleRequest, number: str) -> HttpResponse:
    """One order with its timeline; htmx polls the status part until it is final."""
    order = get_object_or_404(order_list(user_id=request.user.pk), number=number)
    order = _order_ask_stripe(order)
    context = {
        "order": order,
        "is_final": order.status in ORDER_FINAL,
        "attention_after_minutes": ATTENTION_SECONDS // 60,
        "pending_too_long": order.status == RechargeOrder.Status.PENDING
        and timezone.now() - order.created_at >= ORDER_SUPPORT_AFTER,
        "support_after_minutes": int(ORDER_SUPPORT_AFTER.total_seconds()) // 60,
    }
    template = "billing/_order_status.html" if request.htmx else "billing/order_detail.html"
    return render(request, template, context)


@login_required
@require_GET
def order_history(request: ConsoleRequest) -> HttpResponse:
    """Every order of the user, all time, newest first."""
    paginator = Paginator(order_list(user_id=request.user.pk), ORDER_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    template = "billing/_orders_table.html" if request.htmx else "billing/orders.html"
    return render(request, template, {"page": page})


@login_required
@require_POST
def code_redeem_view(request: ConsoleRequest) -> HttpResponse:
    form = RedeemForm(request.POST)
    if _redeem_attempts_over_limit(request.user.pk):
        form.is_valid()
        form.add_error(None, gettext("Too many codes tried in the last hour; try again later."))
        status = 429
    elif form.is_valid():
        try:
            code = code_redeem(user=request.user, code=form.cleaned_data["code"])
        except RechargeError as error:
            form.add_error("code", str(error))
        else:
            messages.success(
                request,
                gettext("Code redeemed: %(amount)s credited.")
                % {"amount": format_usd(code.credit)},
            )
            return redirect("console:recharge")
        status = 400
    else:
        status = 400
    row = recharge_settings()
    amount_form = RechargeAmountForm(
        {"amount": str(row.presets[0] if row.presets else row.min_credit_usd)}, settings_row=row
    )
    quote = None
    if amount_form.is_valid():
        quote = recharge_quote(
            user_id=request.user.pk, credit=amount_form.cleaned_data["amount"], settings_row=row
        )
    context = _recharge_context(request, form=amount_form, quote=quote)
    context["redeem_form"] = form
    return render(request, "billing/recharge.html", context, status=status)


# Redemption codes one user may try per hour (429 past it): more than anyone types
# by hand, far too few to guess a code.
REDEEM_ATTEMPTS_PER_HOUR = 20
REDEEM_WINDOW_SECONDS = 3600


def _redeem_attempts_over_limit(user_id: int) -> bool:
    """Count a user's redemption attempts in the hour; say whether they went past the limit.

    Codes are random enough not to be guessed, but a limit keeps it so.
    """
    key = f"redeem-attempts:{user_id}"
    cache.add(key, 0, timeout=REDEEM_WINDOW_SECONDS)
    try:
        count = cache.incr(key)
    except ValueError:  # The window closed between add and incr.
        cache.set(key, 1, timeout=REDEEM_WINDOW_SECONDS)
        count = 1
    return count > REDEEM_ATTEMPTS_PER_HOUR


# A webhook whose signature is older than this many seconds is refused, so a captured
# one cannot be replayed later: Stripe's own default (it signs every delivery, a retry
# too, as it sends it).
WEBHOOK_TOLERANCE_SECONDS = 300


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Stripe's events: the signature is checked on the raw body before anything is read."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        return HttpResponse("Webhook not configured.", status=400, content_type="text/plain")
    payload = request.body
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"),
            request.headers.get("Stripe-Signature"),
            secret,
            tolerance=WEBHOOK_TOLERANCE_SECONDS,
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        return HttpResponse("Bad signature.", status=400, content_type="text/plain")
    # Verified: from here on every body is acknowledged, a malformed one too (it is
    # stored with its problem; redelivering it would fail the same way for days).
    stripe_event_receive(payload)
    return HttpResponse("ok", content_type="text/plain")


def low_balance_context(*, user_id: int, form: LowBalanceAlertForm | None = None) -> dict:
    """Return what the profile's "Low-balance email" card shows."""
    account = account_for_user(user_id=user_id)
    if form is None:
        threshold = account.low_balance_threshold
        shown = "" if threshold is None else micro_to_usd(threshold).quantize(_CENT)
        form = LowBalanceAlertForm(initial={"threshold": shown})
    return {"low_balance_form": form, "account": account}


@login_required
@require_POST
def low_balance_alert(request: ConsoleRequest) -> HttpResponse:
    """Set or clear the balance below which the customer is emailed (the profile's card).

    htmx swaps the card in place and the card says what happened; without htmx a
    saved threshold goes back to the profile with a message.
    """
    form: LowBalanceAlertForm | None = LowBalanceAlertForm(request.POST)
    notice = ""
    if form is not None and form.is_valid():
        threshold = form.cleaned_data["threshold"]
        below = account_low_balance_threshold_set(user_id=request.user.pk, threshold=threshold)
        if threshold is None:
            notice = gettext("Low-balance emails are off.")
        elif below:
            notice = gettext(
                "Saved. Your balance is already below %(threshold)s: the email goes out the "
                "next time it falls below it, after a top-up."
            ) % {"threshold": format_usd(threshold)}
        else:
            notice = gettext("Saved: one email when your balance falls below %(threshold)s.") % {
                "threshold": format_usd(threshold)
            }
        if not request.htmx:
            messages.success(request, notice)
            return redirect("accounts:profile")
        form = None
    return render(
        request,
        "billing/_low_balance_card.html",
        {**low_balance_context(user_id=request.user.pk, form=form), "notice": notice},
        status=400 if form is not None else 200,
    )
