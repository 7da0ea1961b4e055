from django.conf import settings
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _


def site(request: HttpRequest) -> dict[str, object]:
    """Expose the site name, the console navigation and the header's languages."""
    return {
        "site_name": settings.COMET_SITE_NAME,
        "console_navigation": CONSOLE_NAVIGATION,
        "language_choices": [
            (code, name, SHORT_LANGUAGE_NAMES.get(code, name)) for code, name in settings.LANGUAGES
        ],
    }


# What the header's switcher shows on a phone, where the full name does not fit. Each is part
# of the full name, so the button's name still contains what it shows.
SHORT_LANGUAGE_NAMES = {"en": "EN", "zh-hans": "中文"}


# (url name, label) in the order the console shows them.
CONSOLE_NAVIGATION = [
    ("console:home", _("Home")),
    ("tokens:list", _("Tokens")),
    ("console:recharge", _("Recharge")),
    ("console:logs", _("Logs")),
    ("billing:history", _("Billing")),
    ("pricing", _("Pricing")),
    ("console:relay-api", _("Relay API")),
    ("announcements", _("Announcements")),
    ("accounts:profile", _("Profile")),
]
