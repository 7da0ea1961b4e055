import base64
import csv
import io
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing.models import (
    Account,
    LedgerEntry,
    OrderEvent,
    RechargeOrder,
    RechargeSettings,
    RechargeTier,
    RedemptionCode,
    Reservation,
    SpendReport,
    StripeEvent,
    UserDiscount,
)
from billing.pricing import recharge_settings
from billing.recharge import (
    CODE_PREFIX_LENGTH,
    MintedCode,
    RechargeError,
    code_hash,
    code_normalise,
    codes_mint,
    order_credit,
)
from billing.selectors import ORDERS_NEEDING_ATTENTION, SPEND_REPORT_DAYS, spend_report
from billing.services import LedgerError, account_adjust, account_debt_forgive
from core.admin import DollarsAdmin
from core.inputs import ascii_int
from core.money import (
    MICRO_PER_USD,
    AmountError,
    format_minor,
    format_owed,
    format_usd,
    micro_to_usd,
    usd_to_micro,
)


class ReadOnlyAdmin(DollarsAdmin):
    """Money rows change only through services: the admin shows them."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class AdjustBalanceForm(forms.Form):
    amount = forms.CharField(
        label=gettext_lazy("Amount (USD)"),
        help_text=gettext_lazy("Signed: 25 adds $25, -3.50 takes $3.50 away."),
    )
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy("Required."),
    )

    def clean_amount(self) -> int:
        try:
            amount = usd_to_micro(self.cleaned_data["amount"])
        except AmountError as error:
            raise forms.ValidationError(str(error)) from error
        if amount == 0:
            raise forms.ValidationError(_("The amount must not be zero."))
        return amount


class ForgiveDebtForm(forms.Form):
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy(
            "Required: why this debt is forgiven. Recorded in the ledger with your name."
        ),
    )


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("user", "balance_usd", "owed_usd", "reserved_usd", "used_usd", "request_count")
    money_fields = ("balance", "reserved", "used", "recharged", "low_balance_threshold")
    search_fields = ("user__email",)
    list_select_related = ("user",)
    readonly_fields = ("user", "balance", "reserved", "used", "request_count", "recharged")
    change_form_template = "admin/billing/account/change_form.html"

    @admin.display(description=gettext_lazy("Balance"), ordering="balance")
    def balance_usd(self, account: Account) -> str:
        return format_usd(account.balance)

    @admin.display(description=gettext_lazy("Owes"))
    def owed_usd(self, account: Account) -> str:
        return format_owed(account.owed) if account.owed else "—"

    @admin.display(description=gettext_lazy("Reserved"))
    def reserved_usd(self, account: Account) -> str:
        return format_usd(account.reserved)

    @admin.display(description=gettext_lazy("Used"), ordering="used")
    def used_usd(self, account: Account) -> str:
        return format_usd(account.used)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.has_perm("billing.view_account")

    def get_urls(self):
        return [
            path(
                "<path:object_id>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="billing_account_adjust",
            ),
            path(
                "<path:object_id>/forgive/",
                self.admin_site.admin_view(self.forgive_view),
                name="billing_account_forgive",
            ),
            *super().get_urls(),
        ]

    def adjust_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Adjust a balance by a signed amount with a reason (its own permission)."""
        if not request.user.has_perm("billing.adjust_balance"):
            raise PermissionDenied
        account_id = ascii_int(object_id)
        if account_id is None:
            raise Http404(_("No such account."))
        account = get_object_or_404(Account.objects.select_related("user"), pk=account_id)
        form = AdjustBalanceForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                entry = account_adjust(
                    user_id=account.pk,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    created_by=request.user,  # type: ignore[arg-type]
                )
            except LedgerError as error:
                form.add_error(None, str(error))
            else:
                self.message_user(
                    request,
                    _("Adjusted by %(amount)s; balance now %(balance)s.")
                    % {
                        "amount": format_usd(entry.amount),
                        "balance": format_usd(entry.balance_after),
                    },
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:billing_account_change", args=[account.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "account": account,
            "form": form,
            "title": _("Adjust the balance of %(user)s") % {"user": account.user},
        }
        return TemplateResponse(request, "admin/billing/account/adjust.html", context)

    def forgive_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Forgive what an account owes: one audited ledger entry (adjust permission)."""
        if not request.user.has_perm("billing.adjust_balance"):
            raise PermissionDenied
        account_id = ascii_int(object_id)
        if account_id is None:
            raise Http404(_("No such account."))
        account = get_object_or_404(Account.objects.select_related("user"), pk=account_id)
        form = ForgiveDebtForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                entry = account_debt_forgive(
                    user_id=account.pk,
                    reason=form.cleaned_data["reason"],
                    created_by=request.user,  # type: ignore[arg-type]
                )
            except LedgerError as error:
                form.add_error(None, str(error))
            else:
                self.message_user(
                    request,
                    _("Forgave %(amount)s; the balance is now %(balance)s.")
                    % {
                        "amount": format_usd(entry.amount),
                        "balance": format_usd(entry.balance_after),
                    },
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:billing_account_change", args=[account.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "account": account,
            "owed": format_owed(account.owed),
            "form": form,
            "title": _("Forgive the debt of %(user)s") % {"user": account.user},
        }
        return TemplateResponse(request, "admin/billing/account/forgive.html", context)


# Seed 000: "daily consumption over $100 → permanent discount".
DISCOUNT_DAILY_SPEND = 100 * MICRO_PER_USD


class DailySpendFilter(admin.SimpleListFilter):
    title = gettext_lazy("daily spend")
    parameter_name = "daily_spend"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("100", gettext_lazy("$100 or more a day (yesterday, or on average)"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "100":
            return queryset.filter(
                Q(spend_yesterday__gte=DISCOUNT_DAILY_SPEND)
                | Q(spend_period__gte=DISCOUNT_DAILY_SPEND * SPEND_REPORT_DAYS)
            )
        return queryset


@admin.register(SpendReport)
class SpendReportAdmin(ReadOnlyAdmin):
    """Accounts by daily spend and lifetime recharge, so admins can grant the permanent
    discount of seed 000 (from the account days: `billing.selectors.spend_report`)."""

    list_display = (
        "account_link",
        "spend_today_usd",
        "spend_yesterday_usd",
        "average_daily_usd",
        "recharged_usd",
        "credited_orders_count",
        "discount",
    )
    list_display_links = None
    list_filter = (DailySpendFilter,)
    search_fields = ("user__email",)
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return spend_report()

    def get_ordering(self, request: HttpRequest) -> list[str]:
        # Annotations, not fields: the `ordering` option would be checked against the model.
        return ["-spend_yesterday", "-spend_period", "user_id"]

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.has_perm("billing.view_account")

    @admin.display(description=gettext_lazy("Account"), ordering="user__email")
    def account_link(self, row: SpendReport) -> str:
        url = reverse("admin:billing_account_change", args=[row.pk])
        return format_html('<a href="{}">{}</a>', url, row.user.email)

    @admin.display(description=gettext_lazy("Spent today (UTC)"), ordering="spend_today")
    def spend_today_usd(self, row: Any) -> str:
        return format_usd(row.spend_today)

    @admin.display(description=gettext_lazy("Spent yesterday"), ordering="spend_yesterday")
    def spend_yesterday_usd(self, row: Any) -> str:
        return format_usd(row.spend_yesterday)

    @admin.display(description=gettext_lazy("Average a day (30 days)"), ordering="spend_period")
    def average_daily_usd(self, row: Any) -> str:
        return format_usd(row.spend_period // SPEND_REPORT_DAYS)

    @admin.display(description=gettext_lazy("Lifetime recharge"), ordering="recharged")
    def recharged_usd(self, row: SpendReport) -> str:
        return format_usd(row.recharged)

    @admin.display(description=gettext_lazy("Recharge orders"), ordering="credited_orders")
    def credited_orders_count(self, row: Any) -> int:
        return row.credited_orders

    @admin.display(description=gettext_lazy("Personal discount"), ordering="discount_percent")
    def discount(self, row: Any) -> str:
        if row.discount_percent is not None:
            url = reverse("admin:billing_userdiscount_change", args=[row.discount_id])
            return format_html('<a href="{}">{}%</a>', url, row.discount_percent)
        url = reverse("admin:billing_userdiscount_add") + f"?user={row.pk}"
        return format_html('<a href="{}">{}</a>', url, _("Grant a discount"))


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "account", "kind", "amount", "balance_after", "created_by")
    money_fields = ("amount", "balance_after")
    list_filter = ("kind",)
    search_fields = ("account__user__email", "idempotency_key")
    list_select_related = ("account__user", "created_by")
    date_hierarchy = "created_at"


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = ("request_id", "account", "token", "amount", "status", "expires_at")
    money_fields = ("amount", "token_amount")
    list_filter = ("status",)
    search_fields = ("request_id",)


# --- Recharge -------------------------------------------------------------------


@admin.register(RechargeSettings)
class RechargeSettingsAdmin(admin.ModelAdmin):
    list_display = ("__str__", "currency", "price_per_usd", "min_credit_usd", "max_credit_usd")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not RechargeSettings.objects.exists() and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        row = recharge_settings()
        return HttpResponseRedirect(reverse("admin:billing_rechargesettings_change", args=[row.pk]))


class RechargeTierForm(forms.ModelForm):
    threshold_usd = forms.DecimalField(
        label=gettext_lazy("Threshold (USD)"), min_value=Decimal("0.01")
    )

    class Meta:
        model = RechargeTier
        fields = ("kind", "threshold_usd", "discount_percent")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["threshold_usd"].initial = micro_to_usd(self.instance.threshold)

    def clean_threshold_usd(self) -> int:
        try:
            return usd_to_micro(self.cleaned_data["threshold_usd"])
        except AmountError as error:
            raise forms.ValidationError(str(error)) from error

    def save(self, commit: bool = True) -> RechargeTier:
        self.instance.threshold = self.cleaned_data["threshold_usd"]
        return super().save(commit=commit)


@admin.register(RechargeTier)
class RechargeTierAdmin(admin.ModelAdmin):
    form = RechargeTierForm
    list_display = ("kind", "threshold_usd", "discount_percent")
    list_filter = ("kind",)

    @admin.display(description=gettext_lazy("Threshold"), ordering="threshold")
    def threshold_usd(self, tier: RechargeTier) -> str:
        return format_usd(tier.threshold)


@admin.register(UserDiscount)
class UserDiscountAdmin(admin.ModelAdmin):
    list_display = ("user", "discount_percent", "note", "updated_at")
    search_fields = ("user__email", "note")
    raw_id_fields = ("user",)
    list_select_related = ("user",)


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = gettext_lazy("needs attention")
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", _("Needs attention or paid but not credited"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(ORDERS_NEEDING_ATTENTION)
        return queryset


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    fields = ("at", "kind", "message", "actor")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class CreditByHandForm(forms.Form):
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy(
            "Required: how the payment was checked (kept on the order and the ledger)."
        ),
    )


@admin.register(RechargeOrder)
class RechargeOrderAdmin(ReadOnlyAdmin):
    list_display = (
        "number",
        "user",
        "credit_usd",
        "charged",
        "discount_percent",
        "discount_source",
        "status",
        "created_at",
        "paid_at",
        "credited_at",
    )
    list_filter = (NeedsAttentionFilter, "status", "discount_source", "currency", "livemode")
    search_fields = (
        "number",
        "user__email",
        "stripe_session_id",
        "stripe_payment_intent_id",
        "stripe_charge_id",
    )
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in RechargeOrder._meta.fields]
    money_fields = ("credit",)
    inlines = [OrderEventInline]
    actions = ["credit_by_hand"]

    @admin.display(description=gettext_lazy("Credit"), ordering="credit")
    def credit_usd(self, order: RechargeOrder) -> str:
        return format_usd(order.credit)

    @admin.display(description=gettext_lazy("Charged"), ordering="amount_minor")
    def charged(self, order: RechargeOrder) -> str:
        return format_minor(order.amount_minor, order.currency)

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.has_perm("billing.view_rechargeorder")

    def has_credit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.credit_order_manually")

    @admin.action(
        description=gettext_lazy("Credit selected orders by hand"), permissions=["credit"]
    )
    def credit_by_hand(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Ask for a reason, then credit each order once (already credited ones are skipped)."""
        form = CreditByHandForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            credited: list[str] = []
            skipped: list[str] = []
            for order in queryset.order_by("pk"):
                try:
                    done = order_credit(
                        order_id=order.pk,
                        actor=request.user,  # type: ignore[arg-type]
                        reason=form.cleaned_data["reason"],
                    )
                except RechargeError as error:
                    self.message_user(request, f"{order.number}: {error}", messages.ERROR)
                    continue
                (credited if done else skipped).append(order.number)
            if credited:
                self.message_user(
                    request,
                    _("Credited: %(orders)s.") % {"orders": ", ".join(credited)},
                    messages.SUCCESS,
                )
            if skipped:
                self.message_user(
                    request,
                    _("Already credited, nothing changed: %(orders)s.")
                    % {"orders": ", ".join(skipped)},
                    messages.WARNING,
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "orders": queryset,
            "form": form,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "title": _("Credit orders by hand"),
        }
        return TemplateResponse(request, "admin/billing/rechargeorder/credit.html", context)


class MintCodesForm(forms.Form):
    count = forms.IntegerField(label=gettext_lazy("Count"), min_value=1, max_value=10_000)
    credit_usd = forms.DecimalField(label=gettext_lazy("Worth (USD)"), min_value=Decimal("0.01"))
    batch = forms.CharField(
        label=gettext_lazy("Batch"),
        max_length=100,
        help_text=gettext_lazy("A name to find and export them by."),
    )
    expires_at = forms.DateTimeField(
        label=gettext_lazy("Expires at"),
        required=False,
        help_text=gettext_lazy("Optional, in your time zone, e.g. 2027-01-31 23:59."),
    )


def _minted_csv(minted: list[MintedCode]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["code", "batch", "credit_usd", "expires_at"])
    for item in minted:
        writer.writerow(
            [
                item.code,
                item.row.batch,
                micro_to_usd(item.row.credit),
                item.row.expires_at.isoformat() if item.row.expires_at else "",
            ]
        )
    return buffer.getvalue()


@admin.register(RedemptionCode)
class RedemptionCodeAdmin(ReadOnlyAdmin):
    """Codes by prefix, value and state: the codes themselves are shown once, at minting."""

    list_display = (
        "code_display",
        "batch",
        "credit_usd",
        "state",
        "expires_at",
        "redeemed_by",
        "redeemed_at",
        "created_by",
    )
    list_filter = ("batch", ("redeemed_at", admin.EmptyFieldListFilter))
    money_fields = ("credit",)
    search_fields = ("code_prefix", "batch", "redeemed_by__email")
    list_select_related = ("redeemed_by", "created_by")
    exclude = ("code_hash",)
    actions = ["export_csv"]
    change_list_template = "admin/billing/redemptioncode/change_list.html"

    @admin.display(description=gettext_lazy("Code"), ordering="code_prefix")
    def code_display(self, code: RedemptionCode) -> str:
        return str(code)

    @admin.display(description=gettext_lazy("Worth"), ordering="credit")
    def credit_usd(self, code: RedemptionCode) -> str:
        return format_usd(code.credit)

    @admin.display(description=gettext_lazy("State"))
    def state(self, code: RedemptionCode) -> str:
        return code.state_display

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.has_perm("billing.view_redemptioncode")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Also find the one code a whole code typed into the search box is (by its hash)."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if len(code_normalise(search_term)) > CODE_PREFIX_LENGTH:
            results |= queryset.filter(code_hash=code_hash(search_term))
        return results, may_have_duplicates

    def get_urls(self):
        return [
            path(
                "mint/",
                self.admin_site.admin_view(self.mint_view),
                name="billing_redemptioncode_mint",
            ),
            *super().get_urls(),
        ]

    def mint_view(self, request: HttpRequest) -> HttpResponse:
        """Mint a batch and show its codes, with a CSV of them, this once (own permission).

        Rendered, not redirected: the codes must not pass through the session or a
        message, and this response is not cached. Only their hashes are stored.
        """
        if not request.user.has_perm("billing.mint_redemption_code"):
            raise PermissionDenied
        form = MintCodesForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                minted = codes_mint(
                    count=form.cleaned_data["count"],
                    credit=usd_to_micro(form.cleaned_data["credit_usd"]),
                    batch=form.cleaned_data["batch"],
                    expires_at=form.cleaned_data["expires_at"],
                    created_by=request.user,  # type: ignore[arg-type]
                )
            except (RechargeError, AmountError) as error:
                form.add_error(None, str(error))
            else:
                batch = minted[0].row.batch
                csv_base64 = base64.b64encode(_minted_csv(minted).encode()).decode()
                context = {
                    **self.admin_site.each_context(request),
                    "opts": self.model._meta,
                    "title": _("%(count)s codes minted in batch “%(batch)s”")
                    % {"count": len(minted), "batch": batch},
                    "batch": batch,
                    "codes": "\n".join(item.code for item in minted),
                    "count": len(minted),
                    "credit": format_usd(minted[0].row.credit),
                    # A data: URI: the file comes with this page, nothing keeps it.
                    "csv_href": f"data:text/csv;charset=utf-8;base64,{csv_base64}",
                    "csv_filename": f"redemption-codes-{slugify(batch) or 'batch'}.csv",
                }
                response = TemplateResponse(
                    request, "admin/billing/redemptioncode/minted.html", context, status=201
                )
                response["Cache-Control"] = "no-store"
                return response
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "title": _("Mint redemption codes"),
        }
        return TemplateResponse(request, "admin/billing/redemptioncode/mint.html", context)

    @admin.action(
        description=gettext_lazy("Export selected codes as CSV (prefixes and state, not the codes)")
    )
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="redemption-codes.csv"'
        writer = csv.writer(response)
        writer.writerow(
            [
                "code_prefix",
                "batch",
                "credit_usd",
                "expires_at",
                "state",
                "redeemed_by",
                "redeemed_at",
            ]
        )
        for code in queryset.select_related("redeemed_by").order_by("batch", "pk"):
            writer.writerow(
                [
                    str(code),
                    code.batch,
                    micro_to_usd(code.credit),
                    code.expires_at.isoformat() if code.expires_at else "",
                    code.state,
                    code.redeemed_by.email if code.redeemed_by else "",
                    code.redeemed_at.isoformat() if code.redeemed_at else "",
                ]
            )
        return response


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "type", "livemode", "received_at", "processed_at", "problem")
    list_filter = (("problem", admin.EmptyFieldListFilter), "type", "livemode")
    search_fields = ("event_id",)
