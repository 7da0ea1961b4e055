from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, object]:
    """Expose the site name and the console navigation to every template."""
    return {
        "site_name": settings.COMET_SITE_NAME,
        "console_navigation": CONSOLE_NAVIGATION,
    }


# (url name, label) in the order the console shows them.
CONSOLE_NAVIGATION = [
    ("console:home", "Home"),
    ("tokens:list", "Tokens"),
    ("console:recharge", "Recharge"),
    ("console:logs", "Logs"),
    ("billing:history", "Billing"),
    ("pricing", "Pricing"),
    ("announcements", "Announcements"),
    ("accounts:profile", "Profile"),
]
