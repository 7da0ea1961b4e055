"""The request log filters: one form for the console page, the API, CSV and the admin."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.core import signing
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.models import Token
from core.inputs import ascii_int
from core.times import format_in_zone, zone_name

RANGE_PRESETS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_RANGE = "24h"
_CURSOR_SALT = "logs.cursor"
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: the (created_at, id) of the row next to it."""

    created_at: datetime
    id: int
    # "older": rows after this one in page order; "newer": rows before it.
    direction: str = "older"

    def sign(self) -> str:
        return signing.dumps(
            [self.created_at.isoformat(), self.id, self.direction], salt=_CURSOR_SALT
        )

    @classmethod
    def unsign(cls, value: str) -> "Cursor":
        created_at, row_id, direction = signing.loads(value, salt=_CURSOR_SALT)
        if direction not in ("older", "newer") or not isinstance(row_id, int):
            raise signing.BadSignature("bad cursor")
        return cls(datetime.fromisoformat(created_at), row_id, direction)


@dataclass(frozen=True)
class LogFilters:
    """A validated filter of request log rows (None = any)."""

    start: datetime
    end: datetime
    user_id: int | None = None
    token_id: int | None = None
    model: str = ""
    client_ip: str | None = None
    status: str = ""  # "", "ok", "error", "refused" or a status code
    channel_id: int | None = None

    @property
    def status_code(self) -> int | None:
        return ascii_int(self.status)


class LogFilterForm(forms.Form):
    """The filters as query parameters; every refusal says what to change."""

    range = forms.ChoiceField(
        choices=[
            ("1h", _("Last hour")),
            ("24h", _("Last 24 hours")),
            ("7d", _("Last 7 days")),
            ("30d", _("Last 30 days")),
            ("custom", _("Custom")),
        ],
        required=False,
        label=_("Time range"),
        error_messages={"invalid_choice": _("Choose a time range: 1h, 24h, 7d, 30d or custom.")},
    )
    start = forms.DateTimeField(
        required=False,
        input_formats=DATETIME_FORMATS,
        label=_("From"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        error_messages={"invalid": _("Enter the start as a date and time, like 2026-12-01T14:30.")},
    )
    end = forms.DateTimeField(
        required=False,
        input_formats=DATETIME_FORMATS,
        label=_("To"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        error_messages={"invalid": _("Enter the end as a date and time, like 2026-12-01T15:30.")},
    )
    token = forms.CharField(required=False, max_length=20, widget=forms.Select, label=_("Token"))
    model = forms.CharField(required=False, max_length=200, label=_("Model"))
    ip = forms.GenericIPAddressField(
        required=False,
        label=_("IP address"),
        error_messages={"invalid": _("Enter a valid IPv4 or IPv6 address, like 203.0.113.7.")},
    )
    status = forms.CharField(required=False, max_length=20, label=_("Status"))
    cursor = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, user_id: int | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user_id = user_id
        self.now = timezone.now()
        # A date and time typed here is read in the active zone: the reader's on a page
        # (accounts.middleware.UserTimeZoneMiddleware), UTC for the API. Each label names it.
        zone = zone_name(timezone.get_current_timezone())
        self.fields["start"].label = gettext("From (%(zone)s)") % {"zone": zone}
        self.fields["end"].label = gettext("To (%(zone)s)") % {"zone": zone}
        self.token_ids: set[int] = set()
        if user_id is not None:
            tokens = list(
                Token.objects.filter(user_id=user_id)
                .order_by("name", "id")
                .values_list("id", "name")
            )
            self.token_ids = {token_id for token_id, _ in tokens}
            self.fields["token"].widget.choices = [("", _("All tokens")), *tokens]

    def clean_token(self) -> int | None:
        value = str(self.cleaned_data.get("token") or "").strip()
        if not value:
            return None
        token_id = ascii_int(value)
        if token_id is None:
            raise forms.ValidationError(
                gettext("“%(value)s” is not a token id: choose one of your tokens.")
                % {"value": value}
            )
        if self.user_id is not None and token_id not in self.token_ids:
            raise forms.ValidationError(
                gettext("You have no token with id %(value)s: choose one of your tokens.")
                % {"value": value}
            )
        return token_id

    def clean_status(self) -> str:
        status = self.cleaned_data.get("status", "").strip().lower()
        if status in ("", "ok", "error", "refused"):
            return status
        code = ascii_int(status, maximum=599)
        if code is not None and code >= 100:
            return str(code)
        raise forms.ValidationError(
            gettext("Status is “ok”, “error”, “refused” or an HTTP status code from 100 to 599.")
        )

    def clean_model(self) -> str:
        return self.cleaned_data.get("model", "").strip()

    def clean_cursor(self) -> Cursor | None:
        value = self.cleaned_data.get("cursor", "")
        if not value:
            return None
        try:
            return Cursor.unsign(value)
        except (signing.BadSignature, ValueError, TypeError):
            raise forms.ValidationError(
                gettext(
                    "This page link is not valid (it may be from another filter); start again "
                    "from the first page."
                )
            ) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        retention = timedelta(days=settings.LOG_RETENTION_DAYS)
        chosen = data.get("range") or ""
        if not chosen:
            chosen = "custom" if data.get("start") or data.get("end") else DEFAULT_RANGE
        data["range"] = chosen
        if chosen == "custom":
            start = data.get("start")
            end = data.get("end") or self.now
            if start is None:
                raise forms.ValidationError(gettext("A custom range needs a start date and time."))
            start, end = _utc(start), _utc(end)
            if end <= start:
                raise forms.ValidationError(
                    gettext("The end of the range must be after its start.")
                )
            oldest = self.now - retention
            if start < oldest - timedelta(minutes=1):
                raise forms.ValidationError(
                    gettext("Logs are kept for %(days)s days: choose a start after %(oldest)s.")
                    % {"days": settings.LOG_RETENTION_DAYS, "oldest": format_in_zone(oldest)}
                )
            if end > self.now + timedelta(days=1):
                raise forms.ValidationError(gettext("The end of the range is in the future."))
        else:
            end = self.now
            start = end - RANGE_PRESETS[chosen]
        data["range_start"], data["range_end"] = start, end
        return data

    def filters(self, *, user_id: int | None = None, channel_id: int | None = None) -> LogFilters:
        """Return the validated filters (call after is_valid())."""
        data = self.cleaned_data
        return LogFilters(
            start=data["range_start"],
            end=data["range_end"],
            user_id=self.user_id if self.user_id is not None else user_id,
            token_id=data.get("token"),
            model=data.get("model", ""),
            client_ip=data.get("ip") or None,
            status=data.get("status", ""),
            channel_id=channel_id,
        )

    def error_messages_list(self) -> list[str]:
        """Return every error as one sentence each, field label first."""
        messages = []
        for name, errors in self.errors.items():
            for error in errors:
                if name == "__all__" or name == "cursor":
                    messages.append(str(error))
                else:
                    messages.append(f"{self.fields[name].label or name.title()}: {error}")
        return messages


def _utc(moment: datetime) -> datetime:
    # The form fields already read a typed time in the active zone (Django's
    # from_current_timezone, which refuses a time a DST change skips or repeats).
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment.astimezone(UTC)


class AdminLogFilterForm(LogFilterForm):
    """The same filters over every user's rows, plus the user and the channel."""

    user = forms.CharField(required=False, label=_("User (email or id)"))
    channel = forms.IntegerField(
        required=False,
        min_value=1,
        label=_("Channel id"),
        error_messages={"invalid": _("A channel id is a whole number.")},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, user_id=None, **kwargs)
        self.fields["token"] = forms.CharField(required=False, max_length=20, label=_("Token id"))

    def clean_user(self) -> int | None:
        from accounts.models import User

        value = self.cleaned_data.get("user", "").strip()
        if not value:
            return None
        pk = ascii_int(value)
        lookup = {"pk": pk} if pk is not None else {"email__iexact": value}
        user_id = User.objects.filter(**lookup).values_list("pk", flat=True).first()
        if user_id is None:
            raise forms.ValidationError(gettext("No user “%(value)s”.") % {"value": value})
        return user_id

    def admin_filters(self) -> LogFilters:
        return self.filters(
            user_id=self.cleaned_data.get("user"), channel_id=self.cleaned_data.get("channel")
        )
