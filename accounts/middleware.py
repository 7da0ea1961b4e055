"""Keep staff without a second factor out of the admin site; show users their language and
their time zone."""

from collections.abc import Callable

from allauth.account.internal.flows.login import get_authentication_records
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import urlencode
from django.utils.translation import gettext

from accounts.locale import LANGUAGE_CODES, program_language
from accounts.timezones import user_time_zone
from core.api import API_PATH_PREFIXES


def session_used_mfa(request: HttpRequest) -> bool:
    """Return whether the signed-in user passed a second factor in this session."""
    records = get_authentication_records(request, request.user)
    return any(record.get("method") == "mfa" for record in records)


class StaffMFAMiddleware:
    """With COMET_REQUIRE_STAFF_MFA on, /admin/ needs MFA set up and used at sign-in.

    Staff without MFA are sent to set it up; staff with MFA whose session did not
    pass it (signed in before enabling it) are asked for a code first.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.COMET_REQUIRE_STAFF_MFA and self._is_admin_request(request):
            user = request.user
            if user.is_authenticated and user.is_staff:
                next_query = urlencode({"next": request.get_full_path()})
                if not is_mfa_enabled(user):
                    messages.warning(
                        request,
                        gettext(
                            "Staff accounts need two-factor authentication to use the admin. "
                            "Set it up below, then sign in again."
                        ),
                    )
                    return HttpResponseRedirect(reverse("mfa_index"))
                if not session_used_mfa(request):
                    return HttpResponseRedirect(f"{reverse('mfa_reauthenticate')}?{next_query}")
        return self.get_response(request)

    @staticmethod
    def _is_admin_request(request: HttpRequest) -> bool:
        return request.path.startswith(reverse("admin:index"))


class UserLanguageMiddleware:
    """Show a signed-in user's pages in the language saved on their profile.

    Runs after LocaleMiddleware (which chose from the `django_language` cookie, else
    Accept-Language, else LANGUAGE_CODE) and AuthenticationMiddleware; a user with no
    saved language keeps that choice.

    The APIs (`/api/`, `/user/`) answer programs, like the relay: in English unless the
    request's Accept-Language prefers Chinese (`accounts.locale.program_language`),
    whatever the cookie or a saved language say.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PATH_PREFIXES):
            translation.activate(program_language(request.META.get("HTTP_ACCEPT_LANGUAGE")))
            request.LANGUAGE_CODE = translation.get_language()
            return self.get_response(request)
        user = request.user
        if user.is_authenticated and user.language in LANGUAGE_CODES:
            translation.activate(user.language)
            request.LANGUAGE_CODE = translation.get_language()
        return self.get_response(request)


class UserTimeZoneMiddleware:
    """Show every time on a page in the reader's zone (README, "Time zones").

    The zone saved on the signed-in user's profile, else PLATFORM_TIME_ZONE (signed out,
    or before the browser's zone is stored). Templates convert aware datetimes to the
    active zone, and forms read a typed date and time in it. The APIs (`/api/`, `/user/`)
    answer programs in UTC, ISO 8601 with the offset, whoever asks. Runs after
    AuthenticationMiddleware.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PATH_PREFIXES):
            return self.get_response(request)
        with timezone.override(user_time_zone(request.user)):
            return self.get_response(request)
