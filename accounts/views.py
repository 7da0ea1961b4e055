from typing import Any

from allauth.mfa.utils import is_mfa_enabled
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from accounts.http import ConsoleRequest
from accounts.selectors import token_events_recent
from accounts.services import user_set_notify_new_ip


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
