import re
from decimal import Decimal
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Token
from accounts.tokens import networks_parse
from billing.forms import UsdThresholdField
from core.money import AmountError, micro_to_usd, usd_to_micro
from models_catalog.selectors import AccountLimits
from tokens.form_nonces import form_nonce_check, form_nonce_issue
from tokens.services import token_limit_problems

# The column's limit (a PostgreSQL integer); the API's serializer takes the same.
PG_INTEGER_MAX = 2**31 - 1


def _split_lines(text: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", text) if part]


class TokenForm(forms.Form):
    """The token create / edit form; amounts are typed in USD, stored in micro-USD."""

    name = forms.CharField(label=_("Name"), max_length=100)
    quota = forms.DecimalField(
        required=False,
        min_value=Decimal(0),
        max_digits=16,
        decimal_places=6,
        label=_("Quota (USD)"),
        help_text=_("Empty for unlimited; 0 makes a query-only token that cannot spend."),
    )
    quota_alert = UsdThresholdField(
        label=_("Quota alert (USD)"),
        help_text=_(
            "One email when the quota left falls below this amount; empty for none. "
            "Only for a token with a quota."
        ),
    )
    expires_at = forms.DateTimeField(
        required=False,
        label=_("Expires at"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text=_("Empty for never."),
    )
    allowed_models = forms.CharField(
        required=False,
        label=_("Allowed models"),
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Model names, one per line or separated by commas; empty allows every model."),
    )
    allowed_networks = forms.CharField(
        required=False,
        label=_("Allowed IPs"),
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("IP addresses or CIDR networks (203.0.113.0/24); empty allows any address."),
    )
    concurrency_limit = forms.IntegerField(
        label=_("Concurrency limit"), min_value=1, max_value=PG_INTEGER_MAX, initial=100
    )
    rpm_limit = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=PG_INTEGER_MAX,
        label=_("Requests per minute"),
        help_text=_("Empty for no limit beyond the platform's."),
    )

    def __init__(
        self,
        *args: Any,
        account_limits: AccountLimits,
        token: Token | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # A token's limits can only be lower than its account's (`tokens.services`).
        self.account_limits = account_limits
        self.token = token
        concurrency = self.fields["concurrency_limit"]
        concurrency.widget.attrs["max"] = account_limits.concurrency_limit
        concurrency.help_text = _(
            "Requests in flight at once; at most %(limit)s, your account's limit."
        ) % {"limit": account_limits.concurrency_limit}
        if account_limits.rpm_limit:
            rpm = self.fields["rpm_limit"]
            rpm.widget.attrs["max"] = account_limits.rpm_limit
            rpm.help_text = _(
                "At most %(limit)s, your account's limit; empty for your account's."
            ) % {"limit": account_limits.rpm_limit}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        problems = token_limit_problems(
            account=self.account_limits,
            concurrency_limit=self._changed_limit("concurrency_limit"),
            rpm_limit=self._changed_limit("rpm_limit"),
        )
        for field, problem in problems.items():
            self.add_error(field, problem)
        self._check_quota_alert(cleaned)
        return cleaned

    def _check_quota_alert(self, cleaned: dict[str, Any]) -> None:
        """Refuse an alert without a quota, or a new one not below the quota typed."""
        alert = cleaned.get("quota_alert")
        if alert is None or "quota" not in cleaned:
            return
        quota = cleaned["quota"]
        if quota is None:
            self.add_error(
                "quota_alert",
                _("An unlimited token has no quota to alert on: set a quota or leave this empty."),
            )
            return
        unchanged = (
            self.token is not None
            and self.token.quota_alert_threshold == alert
            and self.token.quota_remaining == usd_to_micro(quota)
        )
        if not unchanged and alert >= usd_to_micro(quota):
            self.add_error(
                "quota_alert",
                _(
                    "The alert is for when the quota left falls below this amount: "
                    "make it lower than the quota."
                ),
            )

    def _changed_limit(self, name: str) -> int | None:
        """Return a limit as typed if it differs from the token's (a lowered account may
        leave a token above it: saving its other settings is not refused for that)."""
        value = self.cleaned_data.get(name)
        if value is None or (self.token is not None and value == getattr(self.token, name)):
            return None
        return value

    @classmethod
    def initial_for(cls, token: Token) -> dict[str, Any]:
        return {
            "name": token.name,
            "quota": None if token.quota_remaining is None else micro_to_usd(token.quota_remaining),
            "quota_alert": None
            if token.quota_alert_threshold is None
            else micro_to_usd(token.quota_alert_threshold).quantize(Decimal("0.01")),
            "expires_at": token.expires_at,
            "allowed_models": "\n".join(token.allowed_models),
            "allowed_networks": "\n".join(token.allowed_networks),
            "concurrency_limit": token.concurrency_limit,
            "rpm_limit": token.rpm_limit,
        }

    def clean_quota(self) -> Decimal | None:
        quota = self.cleaned_data["quota"]
        if quota is not None:
            try:
                usd_to_micro(quota)
            except AmountError as error:
                raise forms.ValidationError(str(error)) from error
        return quota

    def clean_allowed_models(self) -> list[str]:
        return _split_lines(self.cleaned_data["allowed_models"])

    def clean_allowed_networks(self) -> list[str]:
        values = _split_lines(self.cleaned_data["allowed_networks"])
        try:
            networks_parse(values)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from error
        return values

    def service_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "quota_remaining": None if data["quota"] is None else usd_to_micro(data["quota"]),
            "quota_alert_threshold": data["quota_alert"],
            "expires_at": data["expires_at"],
            "allowed_models": data["allowed_models"],
            "allowed_networks": data["allowed_networks"],
            "concurrency_limit": data["concurrency_limit"],
            "rpm_limit": data["rpm_limit"],
        }


FORM_EXPIRED = _(
    "This form is out of date (it was opened more than a day ago, or in another "
    "session). Nothing was changed: check the values and submit it again."
)


class FormNonceMixin(forms.Form):
    """A hidden single-use nonce (`tokens.form_nonces`) for a form that shows a key.

    `cleaned_data["form_nonce"]` is the verified nonce. A missing, forged or stale one
    is a form error, and the form is given a fresh nonce to submit again.
    """

    form_nonce = forms.CharField(widget=forms.HiddenInput, max_length=200)

    def __init__(self, *args: Any, user_id: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user_id = user_id
        self.fields["form_nonce"].initial = form_nonce_issue(user_id)

    def clean_form_nonce(self) -> str:
        nonce = form_nonce_check(self.cleaned_data["form_nonce"], self.user_id)
        if nonce is None:
            raise forms.ValidationError(FORM_EXPIRED, code="form_expired")
        return nonce

    def full_clean(self) -> None:
        super().full_clean()
        if self.is_bound and "form_nonce" in self.errors:
            # Shown with the form's own errors; the form posts a fresh nonce next time.
            del self.errors["form_nonce"]
            self.add_error(None, forms.ValidationError(FORM_EXPIRED, code="form_expired"))
            data = dict(self.data.items())
            data[self.add_prefix("form_nonce")] = form_nonce_issue(self.user_id)
            self.data = data


class TokenCreateForm(FormNonceMixin, TokenForm):
    """The "new token" form: the token form plus its single-use nonce."""


class TokenRollForm(FormNonceMixin):
    """The "roll key" confirmation: only the single-use nonce."""
