"""The console shell: the home page."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing.selectors import account_for_user
from logs.selectors import home_usage


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Show the console home to a signed-in user, the welcome page to anyone else."""
    if not request.user.is_authenticated:
        return render(request, "console/welcome.html")
    return render(
        request,
        "console/home.html",
        {
            "account": account_for_user(user_id=request.user.pk),
            "usage": home_usage(user_id=request.user.pk),
        },
    )
