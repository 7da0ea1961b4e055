from typing import Any

from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views import i18n
from django.views.decorators.http import require_GET, require_POST

from accounts.http import ConsoleRequest
from accounts.models import User
from accounts.selectors import token_events_recent
from accounts.services import user_set_language, user_set_notify_new_ip


def _profile_context(request: ConsoleRequest) -> dict[str, Any]:
    return {
        "mfa_enabled": is_mfa_enabled(request.user),
        "token_events": token_events_recent(user_id=request.user.pk),
    }


@login_required
@require_GET
def profile(request: ConsoleRequest) -> HttpResponse:
    """Show the user's sign-in settings, preferences and recent changes to their tokens."""
    return render(request, "accounts/profile.html", _profile_context(request))


@login_required
@require_POST
def new_ip_alerts(request: ConsoleRequest) -> HttpResponse:
    """Turn the new-IP email on or off; answer the card for htmx, else the profile."""
    user_set_notify_new_ip(user=request.user, is_enabled=request.POST.get("enabled") == "1")
    template = "accounts/_new_ip_alerts.html" if request.htmx else "accounts/profile.html"
    context: dict[str, Any] = {"saved": True}
    if not request.htmx:
        context |= _profile_context(request)
    return render(request, template, context)


@require_POST
def set_language(request: HttpRequest) -> HttpResponse:
    """Switch the language (Django's `set_language`: the cookie, then `next`).

    A signed-in user's saved language beats the cookie, so switching also saves it;
    the profile's form posts here too.
    """
    language = request.POST.get("language", "")
    if isinstance(request.user, User) and language in dict(settings.LANGUAGES):
        user_set_language(user=request.user, language=language)
    return i18n.set_language(request)


@login_required
@require_POST
def language(request: ConsoleRequest) -> HttpResponse:
    """Save the profile's language ("" follows the browser) and set the cookie to match.

    The cookie makes pages shown while signed out follow the choice on this browser.
    """
    choice = request.POST.get("language", "")
    if choice and choice not in dict(settings.LANGUAGES):
        return HttpResponseBadRequest(_("Unknown language."))
    user_set_language(user=request.user, language=choice)
    response = redirect("accounts:profile")
    if choice:
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            choice,
            max_age=settings.LANGUAGE_COOKIE_AGE,
            path=settings.LANGUAGE_COOKIE_PATH,
            domain=settings.LANGUAGE_COOKIE_DOMAIN,
            secure=settings.LANGUAGE_COOKIE_SECURE,
            httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
            samesite=settings.LANGUAGE_COOKIE_SAMESITE,
        )
    else:
        response.delete_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            path=settings.LANGUAGE_COOKIE_PATH,
            domain=settings.LANGUAGE_COOKIE_DOMAIN,
            samesite=settings.LANGUAGE_COOKIE_SAMESITE,
        )
    if choice:
        translation.activate(choice)  # the confirmation is in the language just chosen
    messages.success(request, _("Language saved."))
    return response
