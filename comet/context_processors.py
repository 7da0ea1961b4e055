from django.conf import settings
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _


def site(request: HttpRequest) -> dict[str, object]:
    """Expose the site name and the console navigation to every template."""
    return {
        "site_name": settings.COMET_SITE_NAME,
        "console_navigation": CONSOLE_NAVIGATION,
    }


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
