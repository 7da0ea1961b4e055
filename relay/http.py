"""The relay's HTTP plumbing: ASGI messages in and out, errors in the vendors' shapes."""

import json
from typing import Any

from core.api import error_body

from . import translate

Scope = dict[str, Any]
Message = dict[str, Any]

JSON_HEADERS = [(b"content-type", b"application/json")]


class RelayError(Exception):
    """A refusal that becomes an OpenAI-shaped error response."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        retry_after: int | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.code = code
        self.param = param
        # Seconds after which a retry may succeed (a `Retry-After` header).
        self.retry_after = retry_after
        # More response headers (a rate limit's `x-ratelimit-*` and `retry-after`).
        self.headers = headers or []


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
                f"The request body is larger than {limit} bytes.",
                code="request_too_large",
            )
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_json(send: Any, status: int, body: bytes, extra: list | None = None) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Any, error: RelayError, *, anthropic_format: bool = False) -> None:
    """Answer with `error` in OpenAI's shape, or Anthropic's for `/v1/messages` clients."""
    if anthropic_format:
        body = translate.anthropic_error(error.status_code, error.message)
    else:
        body = error_body(
            error.message, status_code=error.status_code, code=error.code, param=error.param
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
