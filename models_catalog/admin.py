"""Admins edit multipliers here; every price edit goes through `price_change_record`."""

import json
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms.models import BaseModelFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import Promise
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from core.inputs import storable_text_problem

from . import services
from .display import (
    change_lines,
    model_prices,
    price_preview_constants,
    price_text,
    prices_of,
    unit_price_text,
)
from .models import (
    CatalogModel,
    PriceChange,
    PriceChangeBatch,
    PriceChangeEmail,
    PriceChangeSubscription,
    PricingGroup,
    Vendor,
)
from .ratio_import import ratio_export, ratio_import_apply, ratio_import_plan

StrOrPromise = str | Promise

REASON_HELP = _("Required when a price changes: kept in the price history and announced.")
REASON_REQUIRED = _("Give a reason for the price change: it is recorded and announced.")


class PriceEditForm(forms.ModelForm):
    """A change form with the reason and the time a price change takes effect."""

    price_fields: tuple[str, ...] = ()

    change_reason = forms.CharField(
        label=_("Change reason"),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=REASON_HELP,
    )
    effective_at = forms.SplitDateTimeField(
        required=False,
        widget=AdminSplitDateTime,
        label=_("Price change takes effect"),
        help_text=_(
            "Empty = now. A later time (in your time zone) schedules the change; subscribers "
            "are emailed "
            "and it is announced before it applies."
        ),
    )

    def changed_prices(self) -> dict[str, Any]:
        return {
            name: self.cleaned_data.get(name)
            for name in self.price_fields
            if name in self.changed_data
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        prices = self.changed_prices()
        if self.instance.pk and prices:
            if not (cleaned.get("change_reason") or "").strip():
                self.add_error("change_reason", REASON_REQUIRED)
            try:
                services.price_change_validate(
                    target=self.instance,
                    new_prices=prices,
                    effective_at=cleaned.get("effective_at"),
                )
            except services.PriceChangeError as error:
                raise ValidationError(str(error)) from None
        return cleaned


class CatalogModelForm(PriceEditForm):
    price_fields = services.MODEL_PRICE_FIELDS

    class Meta:
        model = CatalogModel
        fields = [
            "name", "vendor", "kind", "context_window", "completion_reserve", "description",
            "is_enabled", *services.MODEL_PRICE_FIELDS,
        ]  # fmt: skip


# What makes a pricing group a line: the models it may call and its accounts' limits.
LINE_FIELDS = ("allows_all_models", "catalog_models", "concurrency_limit", "rpm_limit", "tpm_limit")


class PricingGroupForm(PriceEditForm):
    price_fields = services.GROUP_PRICE_FIELDS

    class Meta:
        model = PricingGroup
        fields = [
            "name",
            "display_name",
            "description",
            "is_default",
            "group_ratio",
            *LINE_FIELDS,
        ]


class ReasonRequiredFormSet(BaseModelFormSet):
    """The list's formset: a price edited in the list needs the reason typed above it."""

    price_fields: tuple[str, ...] = ()

    def clean(self) -> None:
        super().clean()
        edits_price = any(
            set(form.changed_data) & set(self.price_fields)
            for form in self.forms
            if form.is_valid()
        )
        reason = (self.data.get("change_reason") or "").strip()
        if edits_price and not reason:
            raise ValidationError(REASON_REQUIRED)
        # Read from the raw POST (the box is above the list, in no form's fields).
        problem = storable_text_problem(reason)
        if edits_price and problem is not None:
            raise ValidationError(gettext("The reason %(problem)s.") % {"problem": problem})


class PriceHistoryInline(admin.TabularInline):
    model = PriceChange
    fields = ["effective_at", "status", "prices", "reason", "changed_by", "source"]
    readonly_fields = ["effective_at", "status", "prices", "reason", "changed_by", "source"]
    extra = 0
    can_delete = False
    ordering = ["-effective_at", "-pk"]
    verbose_name_plural = _("Price history")

    def get_queryset(self, request: HttpRequest):
        return (
            super()
            .get_queryset(request)
            .select_related("changed_by", "catalog_model", "pricing_group")
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("Old → new"))
    def prices(self, change: PriceChange) -> str:
        return format_html_join(
            "",
            "<div>{}: {} → {}</div>",
            ((line.label, line.old, line.new) for line in change_lines(change)),
        )


def _ratio_text(value: Decimal | int | None) -> str:
    """Return a multiplier as the live preview reads it from a data attribute."""
    return "" if value is None else f"{value:f}"


def price_preview_row(
    label: str,
    *,
    model_ratio: Decimal | None,
    completion_ratio: Decimal | None,
    cached_ratio: Decimal | None,
    price_per_call: int | None,
    group_ratio: Decimal,
    model: CatalogModel | None = None,
) -> dict[str, Any]:
    """Return one row of the price preview: its multipliers and the prices they make (and a
    model's prices per unit, as saved)."""
    prices = prices_of(
        model_ratio=model_ratio,
        completion_ratio=completion_ratio,
        cached_ratio=cached_ratio,
        price_per_call=price_per_call,
        group_ratio=group_ratio,
    )
    per_unit = model_prices(model, group_ratio).per_unit if model is not None else ()
    return {
        "label": label,
        "model_ratio": _ratio_text(model_ratio),
        "completion_ratio": _ratio_text(completion_ratio),
        "cached_ratio": _ratio_text(cached_ratio),
        "price_per_call": _ratio_text(price_per_call),
        "group_ratio": _ratio_text(group_ratio),
        "input": price_text(prices.input_per_1m),
        "output": price_text(prices.output_per_1m),
        "cached": price_text(prices.cached_input_per_1m),
        "per_call": price_text(prices.per_call),
        "per_unit": [unit_price_text(price) for price in per_unit],
    }


def price_preview(
    *,
    row_heading: StrOrPromise,
    rows: list[dict[str, Any]],
    note: StrOrPromise,
    empty: StrOrPromise,
) -> str:
    """Return the table of prices shown beside the multipliers, kept live by
    static/js/admin-prices.js as they are typed."""
    return render_to_string(
        "admin/models_catalog/price_preview.html",
        {
            "constants": price_preview_constants(),
            "row_heading": row_heading,
            "rows": rows,
            "note": note,
            "empty": empty,
        },
    )


class PriceEditingAdmin(admin.ModelAdmin):
    """Shared by the model and group admins: list editing and forms through the service."""

    price_fields: tuple[str, ...] = ()
    change_list_template = "models_catalog/admin/change_list_with_reason.html"
    readonly_fields = ("price_preview",)

    class Media:
        js = ["js/admin-prices.js"]
        css = {"all": ["css/admin-prices.css"]}

    def may_change_prices(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.CHANGE_PRICES_PERMISSION)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and not self.may_change_prices(request):
            readonly += list(self.price_fields)
        return readonly

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or not self.may_change_prices(request):
            return [
                (
                    name,
                    {
                        **opts,
                        "fields": [
                            f for f in opts["fields"] if f not in ("change_reason", "effective_at")
                        ],
                    },
                )
                for name, opts in fieldsets
            ]
        return fieldsets

    def get_changelist_instance(self, request: HttpRequest):
        changelist = super().get_changelist_instance(request)
        if not self.may_change_prices(request):
            changelist.list_editable = ()
        return changelist

    def get_changelist_formset(self, request: HttpRequest, **kwargs: Any):
        formset = type(
            "PriceFormSet", (ReasonRequiredFormSet,), {"price_fields": self.price_fields}
        )
        return super().get_changelist_formset(request, formset=formset, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool
    ) -> None:
        if not change:
            services.catalog_entry_create(entry=obj)
            return
        details = [
            name
            for name in form.changed_data
            if name not in self.price_fields and name in {f.name for f in obj._meta.fields}
        ]
        if details:
            services.catalog_model_update_details(catalog_model=obj, fields=details)
        prices = {
            name: getattr(obj, name) for name in self.price_fields if name in form.changed_data
        }
        if not prices:
            return
        from_form = isinstance(form, PriceEditForm)
        reason = (
            form.cleaned_data.get("change_reason")
            if from_form
            else request.POST.get("change_reason", "")
        )
        try:
            services.price_change_record(
                target=obj,
                new_prices=prices,
                reason=reason or "",
                changed_by=request.user,  # type: ignore[arg-type]
                source=PriceChange.Source.FORM if from_form else PriceChange.Source.LIST,
                effective_at=form.cleaned_data.get("effective_at") if from_form else None,
            )
        except PermissionError:
            raise PermissionDenied from None


@admin.register(Vendor)
class VendorAdmin(admin.ModelAdmin):
    list_display = ["display_name", "name"]
    search_fields = ["name", "display_name"]
    prepopulated_fields = {"name": ["display_name"]}


@admin.register(CatalogModel)
class CatalogModelAdmin(PriceEditingAdmin):
    form = CatalogModelForm
    price_fields = services.MODEL_PRICE_FIELDS
    list_display = [
        "name", "vendor", "kind",
        "model_ratio", "input_price", "completion_ratio", "output_price",
        "cached_ratio", "cached_input_price", "price_per_call", "per_call_price",
        "price_per_million_characters", "price_per_minute", "unit_prices",
        "is_enabled",
    ]  # fmt: skip
    # The image price table is edited on the model's page, not in a list cell.
    list_editable = [name for name in services.MODEL_PRICE_FIELDS if name != "price_per_image"]
    list_filter = ["vendor", "kind", "is_enabled"]
    list_select_related = ["vendor"]
    search_fields = ["name", "description"]
    inlines = [PriceHistoryInline]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "vendor",
                    "kind",
                    "context_window",
                    "completion_reserve",
                    "description",
                    "is_enabled",
                ]
            },
        ),
        (
            _("Price"),
            {
                "fields": [
                    *services.MODEL_PRICE_FIELDS,
                    "price_preview",
                    "change_reason",
                    "effective_at",
                ],
                "description": _(
                    "Per token: model ratio 1 = $2 per 1M input tokens; output tokens cost "
                    "completion ratio times that. Per call, per image, per 1M characters and "
                    "per minute: micro-USD (1 USD = 1,000,000). Set exactly one unit."
                ),
            },
        ),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        readonly = super().get_readonly_fields(request, obj)
        # The name is the relay's cache key and the subscribers' reference: fixed once made.
        return [*readonly, "name"] if obj is not None else readonly

    # The list's prices are before any group multiplier (the form shows each group's).
    @admin.display(description=_("Input / 1M"))
    def input_price(self, model: CatalogModel) -> str:
        return price_text(model_prices(model).input_per_1m)

    @admin.display(description=_("Output / 1M"))
    def output_price(self, model: CatalogModel) -> str:
        return price_text(model_prices(model).output_per_1m)

    @admin.display(description=_("Cached input / 1M"))
    def cached_input_price(self, model: CatalogModel) -> str:
        return price_text(model_prices(model).cached_input_per_1m)

    @admin.display(description=_("Price per call"))
    def per_call_price(self, model: CatalogModel) -> str:
        return price_text(model_prices(model).per_call)

    @admin.display(description=_("Per unit"))
    def unit_prices(self, model: CatalogModel) -> str:
        return (
            format_html_join(
                "",
                "<div>{}</div>",
                ((unit_price_text(line),) for line in model_prices(model).per_unit),
            )
            or "—"
        )

    @admin.display(description=_("Prices"))
    def price_preview(self, model: CatalogModel) -> str:
        groups = list(PricingGroup.objects.order_by("-is_default", "name"))
        rows = [
            price_preview_row(
                _("%(group)s (x%(ratio)s)")
                % {"group": group, "ratio": group.group_ratio.normalize()},
                model_ratio=model.model_ratio,
                completion_ratio=model.completion_ratio,
                cached_ratio=model.cached_ratio,
                price_per_call=model.price_per_call,
                group_ratio=group.group_ratio,
                model=model,
            )
            for group in groups
        ]
        return price_preview(
            row_heading=_("Pricing group"),
            rows=rows,
            note=_("What each pricing group pays, with its multiplier; updated as you type."),
            empty=_("No pricing group yet."),
        )

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="models_catalog_ratio_import",
            ),
            path(
                "export/",
                self.admin_site.admin_view(self.export_view),
                name="models_catalog_ratio_export",
            ),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        response = HttpResponse(
            json.dumps(ratio_export(), indent=2), content_type="application/json"
        )
        response["Content-Disposition"] = 'attachment; filename="ratios.json"'
        return response

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.may_change_prices(request):
            raise PermissionDenied
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": _("Import ratios (one-api JSON)"),
            "opts": self.model._meta,
            "errors": [],
        }
        if request.method == "POST":
            upload = request.FILES.get("ratio_file")
            raw = upload.read() if upload else request.POST.get("raw", "")
            reason = request.POST.get("change_reason", "").strip()
            context.update(
                raw=raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw, reason=reason
            )
            try:
                if not raw:
                    raise services.PriceChangeError(gettext("Choose a JSON file to import."))
                if "apply" in request.POST:
                    if not reason:
                        raise services.PriceChangeError(REASON_REQUIRED)
                    changes = ratio_import_apply(raw=raw, reason=reason, changed_by=request.user)  # type: ignore[arg-type]
                    messages.success(
                        request,
                        ngettext(
                            "Imported: %(count)s price change recorded and announced.",
                            "Imported: %(count)s price changes recorded and announced.",
                            len(changes),
                        )
                        % {"count": len(changes)},
                    )
                    return HttpResponseRedirect(
                        reverse("admin:models_catalog_catalogmodel_changelist")
                    )
                context["plan"] = ratio_import_plan(raw=raw)
            except services.PriceChangeError as error:
                context["errors"] = [str(error)]
        return TemplateResponse(request, "models_catalog/admin/import.html", context)


# Models shown in a group's price preview.
PREVIEW_MODELS = 10


def _audit_value(name: str, value: Any) -> Any:
    """Return a line's field as its audit row records it: models as their sorted names."""
    if name == "catalog_models":
        return sorted(model.name for model in value or ())
    return value


@admin.register(PricingGroup)
class PricingGroupAdmin(PriceEditingAdmin):
    form = PricingGroupForm
    price_fields = services.GROUP_PRICE_FIELDS
    list_display = [
        "name",
        "display_name",
        "group_ratio",
        "ratio_one_price",
        "allows_all_models",
        "concurrency_limit",
        "rpm_limit",
        "tpm_limit",
        "is_default",
    ]
    list_editable = ["group_ratio"]
    filter_horizontal = ["catalog_models"]
    fieldsets = [
        (None, {"fields": ["name", "display_name", "description", "is_default"]}),
        (_("Price"), {"fields": ["group_ratio", "price_preview", "change_reason", "effective_at"]}),
        (
            _("Line: models and limits"),
            {
                "fields": LINE_FIELDS,
                "description": _(
                    "What the line's customers may call, and the limits of each of their "
                    "accounts (an account's own limits, set on the user, replace these). "
                    "An enterprise line: 30000000 tokens per minute."
                ),
            },
        ),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        readonly = super().get_readonly_fields(request, obj)
        # One default group, made by a migration: moving it is not a price edit.
        return [*readonly, "is_default"]

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool
    ) -> None:
        """Save the line's models, then write the audit row of the whole edit (the admin
        runs both in the transaction of the save): its names, models and limits. Its
        ratio is in the price history (`services.price_change_record`)."""
        super().save_related(request, form, formsets, change)
        audited = [
            name
            for name in services.LINE_AUDITED_FIELDS
            if name in form.fields and (not change or name in form.changed_data)
        ]
        changes = {
            name: (
                _audit_value(name, form.initial.get(name)) if change else None,
                _audit_value(name, form.cleaned_data.get(name)),
            )
            for name in audited
        }
        services.line_edit_audit(
            line=form.instance,
            changes=changes,
            created=not change,
            actor=request.user,  # type: ignore[arg-type]
        )

    @admin.display(description=_("Model ratio 1 costs"))
    def ratio_one_price(self, group: PricingGroup) -> str:
        prices = prices_of(
            model_ratio=Decimal(1),
            completion_ratio=Decimal(1),
            cached_ratio=None,
            price_per_call=None,
            group_ratio=group.group_ratio,
        )
        return _("%(price)s / 1M input tokens") % {"price": price_text(prices.input_per_1m)}

    @admin.display(description=_("Prices"))
    def price_preview(self, group: PricingGroup) -> str:
        models = CatalogModel.objects.filter(is_enabled=True).select_related("vendor")
        shown = list(models[:PREVIEW_MODELS])
        group_ratio = group.group_ratio if group.group_ratio is not None else Decimal(1)
        rows = [
            price_preview_row(
                model.name,
                model_ratio=model.model_ratio,
                completion_ratio=model.completion_ratio,
                cached_ratio=model.cached_ratio,
                price_per_call=model.price_per_call,
                group_ratio=group_ratio,
                model=model,
            )
            for model in shown
        ]
        total = models.count() if len(shown) == PREVIEW_MODELS else len(shown)
        return price_preview(
            row_heading=_("Model"),
            rows=rows,
            note=_(
                "What %(shown)s of the %(total)s enabled models cost in this group; "
                "updated as you type the multiplier."
            )
            % {"shown": len(shown), "total": total},
            empty=_("No enabled model yet."),
        )


@admin.register(PriceChange)
class PriceChangeAdmin(admin.ModelAdmin):
    list_display = [
        "target_name",
        "status",
        "effective_at",
        "summary",
        "reason",
        "changed_by",
        "source",
        "batch",
    ]
    list_filter = ["status", "source"]
    list_select_related = ["catalog_model", "pricing_group", "changed_by"]
    search_fields = ["catalog_model__name", "pricing_group__name", "reason"]
    actions = ["cancel_scheduled"]

    @admin.display(description=_("Model or group"))
    def target_name(self, change: PriceChange) -> str:
        return change.target_name

    @admin.display(description=_("Old → new"))
    def summary(self, change: PriceChange) -> str:
        return format_html_join(
            "",
            "<div>{}: {} → {}</div>",
            ((line.label, line.old, line.new) for line in change_lines(change)),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description=_("Cancel the selected scheduled changes"))
    def cancel_scheduled(self, request: HttpRequest, queryset) -> None:
        try:
            cancelled = sum(
                services.price_change_cancel(change=change, cancelled_by=request.user)  # type: ignore[arg-type]
                for change in queryset
            )
        except PermissionError:
            raise PermissionDenied from None
        self.message_user(
            request,
            ngettext(
                "%(count)s scheduled change cancelled.",
                "%(count)s scheduled changes cancelled.",
                cancelled,
            )
            % {"count": cancelled},
        )


@admin.register(PriceChangeBatch)
class PriceChangeBatchAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "closes_at", "closed_at", "announcement_link"]
    readonly_fields = ["status", "closes_at", "closed_at", "announcement"]

    @admin.display(description=_("Announcement"))
    def announcement_link(self, batch: PriceChangeBatch) -> str:
        if batch.announcement_id is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("announcements:detail", args=[batch.announcement_id]),
            gettext("Public page"),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PriceChangeSubscription)
class PriceChangeSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["user", "scope", "is_active", "updated_at"]
    list_filter = ["scope", "is_active"]
    search_fields = ["user__email"]
    raw_id_fields = ["user"]
    filter_horizontal = ["vendors", "catalog_models"]


@admin.register(PriceChangeEmail)
class PriceChangeEmailAdmin(admin.ModelAdmin):
    list_display = ["batch", "subscription", "status", "attempts", "sent_at", "last_error"]
    list_filter = ["status"]
    list_select_related = ["subscription__user", "batch"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
