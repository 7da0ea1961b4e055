"""The console shell: the home page, and the 404 of every address."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.http import require_GET

from billing.selectors import account_for_user
from comet.api import API_PATH_PREFIXES, not_found_json
from logs.selectors import home_usage


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Answer an unknown address: in the API's JSON format under /api/, else the 404 page."""
    if request.path.startswith(API_PATH_PREFIXES):
        return not_found_json(request, exception)
    return defaults.page_not_found(request, exception)


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
