"""The console shell: the home page, the 404 of every address, and the 503 when busy."""

import sys

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import loader
from django.views import defaults
from django.views.decorators.http import require_GET

from billing.selectors import account_for_user
from comet.api import API_PATH_PREFIXES, error_response, not_found_json
from comet.db import BUSY_CODE, BUSY_MESSAGE, BUSY_RETRY_AFTER_SECONDS, database_busy
from logs.selectors import home_usage


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Answer an unknown address: in the API's JSON format under /api/, else the 404 page."""
    if request.path.startswith(API_PATH_PREFIXES):
        return not_found_json(request, exception)
    return defaults.page_not_found(request, exception)


def busy(request: HttpRequest) -> HttpResponse:
    """Answer 503 when no database connection was free in time: JSON for the API, else a page.

    The page is rendered without the request's context (user, messages): building
    that context would need the database too.
    """
    response: HttpResponse
    if request.path.startswith(API_PATH_PREFIXES) or request.path.endswith(".json"):
        response = error_response(BUSY_MESSAGE, status_code=503, code=BUSY_CODE)
    else:
        response = HttpResponse(loader.render_to_string("503.html"), status=503)
    response["Retry-After"] = str(BUSY_RETRY_AFTER_SECONDS)
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """Answer an unhandled error: 503 if the database pool was exhausted, else the 500 page.

    Errors raised in views reach `comet.middleware.DatabaseBusyMiddleware` first;
    this catches those raised outside views (in a middleware, saving the session).
    """
    if database_busy(sys.exc_info()[1]):
        return busy(request)
    return defaults.server_error(request)


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
