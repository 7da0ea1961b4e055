"""The profile's forms."""

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.timezones import time_zone_names


def _time_zone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in time_zone_names()]


class TimeZoneForm(forms.Form):
    """The zone a user reads times in: one of the IANA names `zoneinfo` knows.

    Anything else (an unknown name, a NUL, 10 kB of text) is the one form error below:
    the value is compared with the list, never parsed or looked up.
    """

    time_zone = forms.ChoiceField(
        choices=_time_zone_choices,
        label=_("Show times in"),
        widget=forms.Select(attrs={"id": "time-zone-choice"}),
        error_messages={
            "required": _("Choose a time zone from the list, such as Asia/Shanghai."),
            "invalid_choice": _("Choose a time zone from the list, such as Asia/Shanghai."),
        },
    )
