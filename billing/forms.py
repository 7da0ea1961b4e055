from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _

from billing.models import RechargeSettings
from core.inputs import ascii_decimal
from core.money import MICRO_PER_USD


class RechargeAmountForm(forms.Form):
    """A credit amount in USD: whole cents, between the admin's minimum and maximum."""

    amount = forms.CharField(label=_("Amount of credit (USD)"), max_length=20)

    def __init__(self, *args: object, settings_row: RechargeSettings, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.settings_row = settings_row

    def clean_amount(self) -> int:
        text = self.cleaned_data["amount"].strip().lstrip("$").replace(",", "")
        # Plain digits only: no exponent ("1e309" made quantize() raise), "inf" or "nan".
        value = ascii_decimal(text, signed=True)
        if value is None:
            raise forms.ValidationError(_("Enter an amount in dollars, like 25 or 25.50."))
        if value <= 0:
            raise forms.ValidationError(_("The amount must be more than zero."))
        minimum, maximum = self.settings_row.min_credit_usd, self.settings_row.max_credit_usd
        # The range first: a number of any size compares, only a bounded one quantizes.
        if value > maximum:
            raise forms.ValidationError(
                _("The largest top-up is %(amount)s.") % {"amount": f"${maximum:,.2f}"}
            )
        if value != value.quantize(Decimal("0.01")):
            raise forms.ValidationError(_("Amounts are in whole cents: at most 2 decimals."))
        if value < minimum:
            raise forms.ValidationError(
                _("The smallest top-up is %(amount)s.") % {"amount": f"${minimum:,.2f}"}
            )
        return int(value * MICRO_PER_USD)


class RedeemForm(forms.Form):
    code = forms.CharField(label=_("Redemption code"), max_length=64)

    def clean_code(self) -> str:
        return self.cleaned_data["code"].strip().upper()
