"""Refuse a NUL character in the address before any view or database query sees it;
answer 503 when no database connection is free in time."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext, gettext_noop

from comet.views import busy
from core.api import API_PATH_PREFIXES, error_response
from core.db import database_busy

NUL_MESSAGE = gettext_noop(
    "The address contains a NUL character (%00), which no Comet address or filter has."
)


def nul_in_url(request: HttpRequest) -> str | None:
    """Return where a NUL is in the request's path or query ("path" or the parameter name)."""
    if "\x00" in request.path:
        return "path"
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            return name.replace("\x00", "")
    return None


class NulInUrlMiddleware:
    """Answer 400 to a request with a NUL in its path or query string.

    PostgreSQL refuses NUL in text ("A string literal cannot contain NUL"), and the
    path captures and query parameters that views, the admin's filters and its search
    pass to queries are never checked for it: Django's form fields refuse NUL, raw
    `request.GET` reads and URL captures do not. No address or filter of Comet has a
    NUL, so it is refused here, once, for every page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        where = nul_in_url(request)
        if where is None:
            return self.get_response(request)
        path = request.path.replace("\x00", "")
        # The API's addresses and the charts' JSON answer in the API's format.
        if path.startswith(API_PATH_PREFIXES) or path.endswith(".json"):
            return error_response(
                gettext(NUL_MESSAGE),
                status_code=400,
                code="null_characters_not_allowed",
                param=None if where == "path" else where,
            )
        return render(request, "400.html", {"message": gettext(NUL_MESSAGE)}, status=400)


class DatabaseBusyMiddleware:
    """Answer 503 "busy, retry" when a view found no database connection free in time.

    The pool lends each process at most DATABASE_POOL_MAX_SIZE connections and a
    request waits DATABASE_POOL_TIMEOUT_SECONDS for one (core.db). Last in
    MIDDLEWARE, so its `process_exception` is the first to see a view's error.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if database_busy(exception):
            return busy(request)
        return None
