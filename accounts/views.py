from allauth.mfa.utils import is_mfa_enabled
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from accounts.http import ConsoleRequest
from accounts.services import user_set_notify_new_ip


@login_required
@require_GET
def profile(request: HttpRequest) -> HttpResponse:
    """Show the user's sign-in settings and where their preferences will live."""
    return render(
        request,
        "accounts/profile.html",
        {"mfa_enabled": is_mfa_enabled(request.user)},
    )


@login_required
@require_POST
def new_ip_alerts(request: ConsoleRequest) -> HttpResponse:
    """Turn the new-IP email on or off; answer the card for htmx, else the profile."""
    user_set_notify_new_ip(user=request.user, is_enabled=request.POST.get("enabled") == "1")
    template = "accounts/_new_ip_alerts.html" if request.htmx else "accounts/profile.html"
    context = {"saved": True}
    if not request.htmx:
        context["mfa_enabled"] = is_mfa_enabled(request.user)
    return render(request, template, context)
