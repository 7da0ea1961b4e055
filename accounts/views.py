from typing import Any

from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views import i18n
from django.views.decorators.http import require_GET, require_POST

from accounts.forms import TimeZoneForm
from accounts.http import ConsoleRequest
from accounts.models import User
from accounts.selectors import token_events_recent
from accounts.services import (
    user_set_browser_time_zone,
    user_set_language,
    user_set_notify_new_ip,
    user_set_time_zone,
)
from accounts.timezones import is_time_zone
from core.times import zone_name


def _profile_context(
    request: ConsoleRequest, time_zone_form: TimeZoneForm | None = None
) -> dict[str, Any]:
    if time_zone_form is None:
        # The zone in use: saved, else the platform's (what the middleware activated).
        current = zone_name(timezone.get_current_timezone())
        time_zone_form = TimeZoneForm(initial={"time_zone": current})
    return {
        "mfa_enabled": is_mfa_enabled(request.user),
        "token_events": token_events_recent(user_id=request.user.pk),
        "time_zone_form": time_zone_form,
        "platform_time_zone": settings.PLATFORM_TIME_ZONE,
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


@login_required
@require_POST
def time_zone(request: ConsoleRequest) -> HttpResponse:
    """Save the zone the user reads times in; a value not in the list is a form error (400)."""
    form = TimeZoneForm(request.POST)
    if not form.is_valid():
        return render(request, "accounts/profile.html", _profile_context(request, form), status=400)
    user_set_time_zone(user=request.user, time_zone=form.cleaned_data["time_zone"])
    messages.success(request, _("Time zone saved."))
    return redirect("accounts:profile")


@login_required
@require_POST
def browser_time_zone(request: ConsoleRequest) -> HttpResponse:
    """Store the zone the browser reports (js/timezone.js) while the user has none saved.

    Answers 204 whether or not it was stored (a zone already saved is kept), and 400 to a
    name that is not a known zone.
    """
    name = request.POST.get("time_zone", "")
    if not is_time_zone(name):
        return HttpResponseBadRequest(
            _("Unknown time zone."), content_type="text/plain; charset=utf-8"
        )
    user_set_browser_time_zone(user=request.user, time_zone=name)
    return HttpResponse(status=204)
