from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _

from billing.alerts import THRESHOLD_MAX
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


class UsdThresholdField(forms.CharField):
    """An alert threshold typed in USD (whole cents, more than zero); empty is None.

    Cleaned to integer micro-USD. Only plain ASCII digits are read: another script's
    digits, an exponent, "inf", a control character or an amount past the largest
    threshold are form errors.
    """

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 20)
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.widget.attrs.setdefault("inputmode", "decimal")

    def clean(self, value: object) -> int | None:
        text = super().clean(value)
        text = text.strip().lstrip("$").replace(",", "") if text else ""
        if not text:
            return None
        amount = ascii_decimal(text, signed=True)
        if amount is None:
            raise forms.ValidationError(_("Enter an amount in dollars, like 10 or 10.50."))
        if amount <= 0:
            raise forms.ValidationError(_("The amount must be more than zero."))
        maximum = Decimal(THRESHOLD_MAX) / MICRO_PER_USD
        if amount > maximum:
            raise forms.ValidationError(
                _("The largest threshold is %(amount)s.") % {"amount": f"${maximum:,.2f}"}
            )
        if amount != amount.quantize(Decimal("0.01")):
            raise forms.ValidationError(_("Amounts are in whole cents: at most 2 decimals."))
        return int(amount * MICRO_PER_USD)


class LowBalanceAlertForm(forms.Form):
    """The profile's low-balance email: the balance (USD) below which to email; empty: off."""

    threshold = UsdThresholdField(
        label=_("Email me when my balance falls below (USD)"),
        help_text=_("Empty: no email."),
    )
