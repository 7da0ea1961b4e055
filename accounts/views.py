from allauth.mfa.utils import is_mfa_enabled
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@login_required
@require_GET
def profile(request: HttpRequest) -> HttpResponse:
    """Show the user's sign-in settings and where their preferences will live."""
    return render(
        request,
        "accounts/profile.html",
        {"mfa_enabled": is_mfa_enabled(request.user)},
    )
