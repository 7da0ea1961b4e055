"""The console shell: the home page, the Relay API page, the 404 of every address, and
the 503 when busy."""

import sys

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import loader
from django.urls import reverse
from django.utils.translation import gettext
from django.views import defaults
from django.views.decorators.http import require_GET

from accounts.selectors import token_count
from billing.selectors import account_for_user, welcome_credit
from core.api import API_PATH_PREFIXES, error_response, not_found_json
from core.db import BUSY_CODE, BUSY_MESSAGE, BUSY_RETRY_AFTER_SECONDS, database_busy
from core.links import relay_base_url
from logs.selectors import home_usage
from tokens.quickstart import KEY_PLACEHOLDER, quickstart_context, quickstart_model, relay_endpoints


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
        response = error_response(gettext(BUSY_MESSAGE), status_code=503, code=BUSY_CODE)
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
    """Show the console home to a signed-in user, the welcome page to anyone else.

    The home knows how far the user got: no token yet (create a key), a token but no
    call yet (the quickstart), or calls made (the usage summary).
    """
    if not request.user.is_authenticated:
        return render(request, "console/welcome.html")
    user_id = request.user.pk
    account = account_for_user(user_id=user_id)
    tokens = token_count(user_id=user_id)
    if not tokens:
        stage = "create-key"
    elif not account.request_count:
        stage = "first-call"
    else:
        stage = "in-use"
    return render(
        request,
        "console/home.html",
        {
            "account": account,
            "usage": home_usage(user_id=user_id),
            "stage": stage,
            "token_count": tokens,
            "welcome_credit": welcome_credit(user_id=user_id),
            "quickstart": quickstart_context(request),
        },
    )


@require_GET
def relay_api(request: HttpRequest) -> HttpResponse:
    """Describe the OpenAI-compatible `/v1/*` endpoints the relay serves, with examples."""
    base_url = relay_base_url(request)
    return render(
        request,
        "console/relay_api.html",
        {
            "quickstart": quickstart_context(request),
            "endpoints": relay_endpoints(
                base_url=base_url, key=KEY_PLACEHOLDER, model=quickstart_model()
            ),
            "pricing_url": reverse("pricing"),
            "tokens_url": reverse("tokens:list"),
            "logs_url": reverse("console:logs"),
            "docs_url": reverse("api-docs"),
        },
    )
