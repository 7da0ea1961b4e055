from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from billing.models import Account, LedgerEntry, Reservation
from billing.money import AmountError, format_usd, usd_to_micro
from billing.services import LedgerError, account_adjust


class ReadOnlyAdmin(admin.ModelAdmin):
    """Money rows change only through services: the admin shows them."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class AdjustBalanceForm(forms.Form):
    amount = forms.CharField(
        label="Amount (USD)", help_text="Signed: 25 adds $25, -3.50 takes $3.50 away."
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Required.")

    def clean_amount(self) -> int:
        try:
            amount = usd_to_micro(self.cleaned_data["amount"])
        except AmountError as error:
            raise forms.ValidationError(str(error)) from error
        if amount == 0:
            raise forms.ValidationError("The amount must not be zero.")
        return amount


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("user", "balance_usd", "reserved_usd", "used_usd", "request_count")
    search_fields = ("user__email",)
    list_select_related = ("user",)
    readonly_fields = ("user", "balance", "reserved", "used", "request_count", "recharged")
    change_form_template = "admin/billing/account/change_form.html"

    @admin.display(description="Balance", ordering="balance")
    def balance_usd(self, account: Account) -> str:
        return format_usd(account.balance)

    @admin.display(description="Reserved")
    def reserved_usd(self, account: Account) -> str:
        return format_usd(account.reserved)

    @admin.display(description="Used", ordering="used")
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
            *super().get_urls(),
        ]

    def adjust_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Adjust a balance by a signed amount with a reason (its own permission)."""
        if not request.user.has_perm("billing.adjust_balance"):
            raise PermissionDenied
        account = get_object_or_404(Account.objects.select_related("user"), pk=object_id)
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
                    f"Adjusted by {format_usd(entry.amount)}; balance now "
                    f"{format_usd(entry.balance_after)}.",
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
            "title": f"Adjust the balance of {account.user}",
        }
        return TemplateResponse(request, "admin/billing/account/adjust.html", context)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "account", "kind", "amount", "balance_after", "created_by")
    list_filter = ("kind",)
    search_fields = ("account__user__email", "idempotency_key")
    list_select_related = ("account__user", "created_by")
    date_hierarchy = "created_at"


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = ("request_id", "account", "token", "amount", "status", "expires_at")
    list_filter = ("status",)
    search_fields = ("request_id",)
