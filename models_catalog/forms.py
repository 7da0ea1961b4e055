from django import forms
from django.utils.translation import gettext_lazy as _

from .models import CatalogModel, PriceChangeSubscription, Vendor


class PricingFilterForm(forms.Form):
    """The pricing page's search and filters (all optional, from the query string)."""

    q = forms.CharField(required=False, max_length=100, label=_("Search"))
    vendor = forms.ChoiceField(required=False)
    kind = forms.ChoiceField(
        required=False, choices=[("", _("All kinds")), *CatalogModel.Kind.choices]
    )
    raw = forms.BooleanField(required=False, label=_("Show raw multipliers"))

    def __init__(self, *args, vendors=(), **kwargs):
        super().__init__(*args, **kwargs)
        vendor_field = self.fields["vendor"]
        assert isinstance(vendor_field, forms.ChoiceField)
        vendor_field.choices = [("", _("All vendors"))] + [
            (vendor.name, vendor.display_name) for vendor in vendors
        ]


class SubscriptionForm(forms.Form):
    scope = forms.ChoiceField(
        label=_("Which price changes"),
        choices=PriceChangeSubscription.Scope.choices,
        widget=forms.RadioSelect,
        initial=PriceChangeSubscription.Scope.ALL,
    )
    vendors = forms.ModelMultipleChoiceField(
        label=_("Vendors"),
        queryset=Vendor.objects.order_by("display_name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    catalog_models = forms.ModelMultipleChoiceField(
        queryset=CatalogModel.objects.filter(is_enabled=True).order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=_("Models"),
    )

    def clean(self):
        cleaned = super().clean() or {}
        scope = cleaned.get("scope")
        if scope == PriceChangeSubscription.Scope.VENDORS and not cleaned.get("vendors"):
            self.add_error("vendors", _("Choose at least one vendor."))
        if scope == PriceChangeSubscription.Scope.MODELS and not cleaned.get("catalog_models"):
            self.add_error("catalog_models", _("Choose at least one model."))
        return cleaned
