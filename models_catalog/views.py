"""The public pricing page, a model's price history, subscriptions and unsubscribing."""

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.middleware import HtmxDetails

from . import selectors, services
from .display import Prices, change_lines, model_prices
from .emails import subscription_id_from_token
from .forms import PricingFilterForm, SubscriptionForm
from .models import CatalogModel, PriceChangeSubscription, PricingGroup


class HtmxRequest(HttpRequest):
    """A request through django-htmx's middleware (for type checkers only)."""

    htmx: HtmxDetails


@dataclass(frozen=True)
class PricingRow:
    model: CatalogModel
    prices: Prices


def pricing_rows(*, form: PricingFilterForm, group: PricingGroup) -> list[PricingRow]:
    """Return the rows of the models `group`'s line may call, priced for it."""
    data = form.cleaned_data if form.is_valid() else {}
    models = selectors.catalog_model_list(
        search=data.get("q", ""),
        vendor=data.get("vendor", ""),
        kind=data.get("kind", ""),
        line=group,
    )
    return [PricingRow(model, model_prices(model, group.group_ratio)) for model in models]


@require_GET
def pricing(request: HtmxRequest) -> HttpResponse:
    """Show the price of every enabled model the visitor's line may call (signed out: the
    default line's); htmx gets just the table."""
    group = selectors.pricing_group_of(request.user)
    form = PricingFilterForm(request.GET or None, vendors=selectors.vendor_list())
    context = {
        "form": form,
        "group": group,
        "rows": pricing_rows(form=form, group=group),
        "show_raw": form.is_valid() and form.cleaned_data.get("raw"),
    }
    template = (
        "models_catalog/_pricing_table.html" if request.htmx else "models_catalog/pricing.html"
    )
    return render(request, template, context)


@require_GET
def model_detail(request: HttpRequest, model_name: str) -> HttpResponse:
    """Show one model's current price and its price history."""
    catalog_model = get_object_or_404(
        CatalogModel.objects.select_related("vendor"), name=model_name, is_enabled=True
    )
    group = selectors.pricing_group_of(request.user)
    return render(
        request,
        "models_catalog/model_detail.html",
        {
            "model": catalog_model,
            "group": group,
            "prices": model_prices(catalog_model, group.group_ratio),
            "history": [
                (change, change_lines(change))
                for change in selectors.price_history(catalog_model=catalog_model)
            ],
        },
    )


def subscription_context(request: HttpRequest, form: SubscriptionForm | None = None) -> dict:
    subscription = selectors.subscription_of(user=request.user)  # type: ignore[arg-type]
    if form is None:
        initial = {}
        if subscription is not None:
            initial = {
                "scope": subscription.scope,
                "vendors": list(subscription.vendors.all()),
                "catalog_models": list(subscription.catalog_models.all()),
            }
        form = SubscriptionForm(initial=initial)
    return {
        "subscription_form": form,
        "subscription": subscription,
        "email_verified": services.has_verified_email(request.user),  # type: ignore[arg-type]
    }


@login_required
@require_http_methods(["GET", "POST"])
def subscription(request: HtmxRequest) -> HttpResponse:
    """Subscribe to, change or stop price-change emails (the profile's card posts here).

    htmx swaps the card in place and the card says what happened; a flash message
    would wait in the session and show on whichever full page came next.
    """
    form = None
    notice = ""
    if request.method == "POST":
        if "unsubscribe" in request.POST:
            current = selectors.subscription_of(user=request.user)  # type: ignore[arg-type]
            if current is not None and services.price_change_subscription_cancel(
                subscription=current
            ):
                notice = gettext("You will get no more price change emails.")
        else:
            form = SubscriptionForm(request.POST)
            if form.is_valid():
                try:
                    services.price_change_subscription_save(
                        user=request.user,  # type: ignore[arg-type]
                        scope=form.cleaned_data["scope"],
                        vendors=form.cleaned_data["vendors"],
                        catalog_models=form.cleaned_data["catalog_models"],
                    )
                except services.SubscriptionError as error:
                    form.add_error(None, str(error))
                else:
                    notice = gettext("Price change emails: saved.")
                    form = None
        if not request.htmx and form is None:
            if notice:
                messages.success(request, notice)
            return redirect("accounts:profile")
    status = 400 if form is not None and form.errors else 200
    return render(
        request,
        "models_catalog/_subscription_card.html",
        {**subscription_context(request, form), "notice": notice},
        status=status,
    )


@csrf_exempt  # The signed token is the credential; mail clients POST it without a session.
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """Stop price-change emails from a link in one: no login, the link is signed.

    GET asks (link scanners follow links); POST unsubscribes, which is also what
    mail clients send for `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
    """
    subscription_id = subscription_id_from_token(token)
    if subscription_id is None:
        return render(request, "models_catalog/unsubscribe.html", {"invalid": True}, status=400)
    found = (
        PriceChangeSubscription.objects.select_related("user").filter(pk=subscription_id).first()
    )
    if found is None:
        raise Http404("No such subscription.")
    done = False
    if request.method == "POST":
        services.price_change_subscription_cancel(subscription=found)
        done = True
    return render(
        request,
        "models_catalog/unsubscribe.html",
        {"subscription": found, "done": done or not found.is_active, "token": token},
    )
