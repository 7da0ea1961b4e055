"""The request type of console views: a signed-in user, with django-htmx's details."""

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from accounts.models import User


class ConsoleRequest(HttpRequest):
    """A request that passed `login_required` (for type checkers only)."""

    user: User
    htmx: HtmxDetails
