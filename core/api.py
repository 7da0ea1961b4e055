"""One error format for every API response: OpenAI's `{"error": {...}}` shape.

Programs that call the relay already parse this shape, so the console API speaks
it too: `message` is for a person, `code` for a program, `param` names the field.
"""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.utils.translation import gettext
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.db import BUSY_CODE, BUSY_MESSAGE, BUSY_RETRY_AFTER_SECONDS, database_busy

# Addresses whose errors (404s and refusals before any view) come in this format.
API_PATH_PREFIXES = ("/api/", "/user/")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(
    message: str, *, status_code: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """Return the JSON body of an API error."""
    return {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status_code, "api_error"),
            "param": param,
            "code": code,
        }
    }


def error_response(
    message: str, *, status_code: int, code: str | None = None, param: str | None = None
) -> JsonResponse:
    """Return an API error as a plain Django response (for views outside DRF)."""
    return JsonResponse(
        error_body(message, status_code=status_code, code=code, param=param), status=status_code
    )


def _first_validation_error(detail: Any, prefix: str = "") -> tuple[str | None, str, str]:
    """Return (param, message, code) of the first error in a ValidationError's detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            param = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors":
                param = prefix
            found = _first_validation_error(value, param)
            return (found[0] or None, found[1], found[2])
    if isinstance(detail, list) and detail:
        return _first_validation_error(detail[0], prefix)
    code = getattr(detail, "code", "invalid")
    return (prefix or None, str(detail), str(code))


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render every DRF exception in the API's one error format."""
    # Django's own 404 / 403 (get_object_or_404, get_object) speak the same format.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if database_busy(exc):
        # No database connection was free in time (core.db): retry shortly.
        return Response(
            error_body(gettext(BUSY_MESSAGE), status_code=503, code=BUSY_CODE),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        param, message, code = _first_validation_error(exc.detail)
        if param:
            message = f"{param}: {message}"
        response.data = error_body(
            message, status_code=response.status_code, code=code, param=param
        )
        response.data["error"]["details"] = exc.detail
        return response
    if isinstance(exc, exceptions.APIException):
        detail = exc.detail
        message = str(detail if not isinstance(detail, dict | list) else exc.default_detail)
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        response.data = error_body(message, status_code=response.status_code, code=str(code))
        return response
    return response


def not_found_json(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(
        gettext("Unknown API route."), status_code=status.HTTP_404_NOT_FOUND, code="not_found"
    )
