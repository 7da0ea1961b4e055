"""The relay's HTTP plumbing: ASGI messages in and out, errors in the vendors' shapes."""

import json
from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext_noop

from accounts.locale import message_in, program_language
from core.api import error_body

from . import translate

Scope = dict[str, Any]
Message = dict[str, Any]

JSON_HEADERS = [(b"content-type", b"application/json")]


class RelayError(Exception):
    """A refusal that becomes an OpenAI-shaped error response.

    `message` is an English msgid (marked with gettext_noop) with `%(name)s` holes that
    `params` fill: it is translated only when the error is sent, and only if the
    request's Accept-Language asks for Chinese. `code` never changes with the language.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        retry_after: int | None = None,
        params: Mapping[str, object] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.template = message
        self.params = params
        self.code = code
        self.param = param
        # Seconds after which a retry may succeed (a `Retry-After` header).
        self.retry_after = retry_after
        # More response headers (a rate limit's `x-ratelimit-*` and `retry-after`).
        self.headers = headers or []

    @property
    def message(self) -> str:
        """The message in English."""
        return message_in("en", self.template, self.params)

    def message_in(self, language: str) -> str:
        return message_in(language, self.template, self.params)


def request_language(headers: Any) -> str:
    """Return the language of an error message for a request's headers (a dict or the
    ASGI list of pairs): read only when an error is sent."""
    if isinstance(headers, dict):
        return program_language(headers.get(b"accept-language"))
    for name, value in headers:
        if name == b"accept-language":
            return program_language(value)
    return "en"


async def read_body(receive: Any, limit: int) -> bytes:
    """Return the request body, or raise 413 once it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RelayError(
                413,
                gettext_noop("The request body is larger than %(limit)s bytes."),
                code="request_too_large",
                params={"limit": limit},
            )
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_json(send: Any, status: int, body: bytes, extra: list | None = None) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Any, error: RelayError, *, anthropic_format: bool = False, language: str = "en"
) -> None:
    """Answer with `error` in OpenAI's shape, or Anthropic's for `/v1/messages` clients,
    its message in `language` (`request_language`)."""
    message = error.message_in(language)
    if anthropic_format:
        body = translate.anthropic_error(error.status_code, message)
    else:
        body = error_body(
            message, status_code=error.status_code, code=error.code, param=error.param
        )
        if error.status_code in (502, 503):
            body["error"]["type"] = "upstream_error"
    extra = list(error.headers)
    if error.retry_after is not None:
        extra.append((b"retry-after", str(error.retry_after).encode()))
    await send_json(send, error.status_code, json.dumps(body).encode(), extra)


def api_key(headers: dict[bytes, bytes]) -> str | None:
    """Return the key of `Authorization: Bearer` (OpenAI) or `x-api-key` (Anthropic)."""
    authorization = headers.get(b"authorization")
    if authorization:
        scheme, _, value = authorization.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    key = headers.get(b"x-api-key")
    return key.decode("latin-1").strip() if key else None
