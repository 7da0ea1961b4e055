"""One attempt at one channel: send the request, and decide whether to try the next.

An attempt fails over (`AttemptFailed.is_retryable`) on a connect error, a timeout,
a 5xx, a 429 or a refused channel key, as long as nothing has reached the client:
a stream counts as answered only once its first chunk has arrived. The request sent
carries the channel's header and parameter overrides (`relay.overrides`) and the key
the attempt was given (`ChannelRoute.api_key`; `relay.keys` turns a channel's keys).
"""

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from . import anthropic_chat, azure, gemini, mock, translate
from .keys import retry_after_seconds
from .overrides import parameters_apply
from .selectors import ChannelRoute


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A relay route and how it maps to upstreams."""

    name: str
    upstream_path: str
    kinds: frozenset[str]
    can_stream: bool
    anthropic_format: bool = False
    has_completion: bool = True
    # Images and audio (`relay.media`): billed by their unit, never sent twice.
    is_media: bool = False
    # The request is a multipart form (a file upload), not JSON.
    is_multipart: bool = False
    # The answer is a file (speech), passed through as it arrives.
    answers_binary: bool = False


CHAT = Endpoint(
    "chat",
    "/chat/completions",
    frozenset({"openai", "anthropic", "azure", "gemini", "mock"}),
    can_stream=True,
)
COMPLETIONS = Endpoint(
    "completions", "/completions", frozenset({"openai", "azure", "mock"}), can_stream=True
)
EMBEDDINGS = Endpoint(
    "embeddings",
    "/embeddings",
    frozenset({"openai", "azure", "mock"}),
    can_stream=False,
    has_completion=False,
)
MESSAGES = Endpoint(
    "messages",
    "/messages",
    frozenset({"anthropic", "openai", "azure", "gemini", "mock"}),
    can_stream=True,
    anthropic_format=True,
)
# OpenAI's Responses API: served by the channels that speak it (relay/README.md).
RESPONSES = Endpoint("responses", "/responses", frozenset({"openai", "mock"}), can_stream=True)
# The endpoints whose streams report usage only when asked (`stream_options.include_usage`):
# a Responses stream always ends with it, and refuses the option.
ASKS_STREAM_USAGE = frozenset({CHAT.name, COMPLETIONS.name})


_MEDIA_KINDS = frozenset({"openai", "azure", "mock"})
IMAGES_GENERATIONS = Endpoint(
    "images", "/images/generations", _MEDIA_KINDS, can_stream=False, has_completion=False,
    is_media=True,
)  # fmt: skip
IMAGES_EDITS = Endpoint(
    "image_edits", "/images/edits", _MEDIA_KINDS, can_stream=False, has_completion=False,
    is_media=True, is_multipart=True,
)  # fmt: skip
SPEECH = Endpoint(
    "speech", "/audio/speech", _MEDIA_KINDS, can_stream=False, has_completion=False,
    is_media=True, answers_binary=True,
)  # fmt: skip
TRANSCRIPTIONS = Endpoint(
    "transcriptions", "/audio/transcriptions", _MEDIA_KINDS, can_stream=False,
    has_completion=False, is_media=True, is_multipart=True,
)  # fmt: skip
TRANSLATIONS = Endpoint(
    "translations", "/audio/translations", _MEDIA_KINDS, can_stream=False,
    has_completion=False, is_media=True, is_multipart=True,
)  # fmt: skip


class AttemptFailed(Exception):
    """An attempt that produced no answer for the client."""

    def __init__(
        self,
        reason: str,
        *,
        is_retryable: bool,
        status_code: int = 502,
        body: bytes = b"",
        content_type: bytes = b"application/json",
        retry_after: float | None = None,
        is_quota_exhausted: bool = False,
        was_sent: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.is_retryable = is_retryable
        # The request may have reached the upstream, which then failed (no answer to pass).
        self.was_sent = was_sent
        self.status_code = status_code
        self.body = body
        self.content_type = content_type
        # A 429's Retry-After in seconds, and whether it said the key is out of quota.
        self.retry_after = retry_after
        self.is_quota_exhausted = is_quota_exhausted


@dataclass
class UpstreamAnswer:
    """An upstream's answer, ready to pass to the client.

    `body` is set for a complete answer; a stream has `first_chunk` and `rest`.
    `translator` turns the upstream's stream into the client's format (`Outbound`).
    """

    route: ChannelRoute
    status_code: int
    content_type: bytes
    body: bytes | None = None
    first_chunk: bytes = b""
    rest: AsyncIterator[bytes] | None = None
    translator: "StreamTranslator | None" = None
    response: aiohttp.ClientResponse | None = field(default=None, repr=False)

    async def aclose(self) -> None:
        # close, not release: a stream cut short leaves the connection unusable.
        if self.response is not None:
            self.response.close()


async def _iterate(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _mock_answer(
    route: ChannelRoute, endpoint: Endpoint, body: dict[str, Any], model: str, stream: bool
) -> UpstreamAnswer:
    answer = mock.answer(endpoint.upstream_path, body, model=model, stream=stream)
    if isinstance(answer, bytes):
        return UpstreamAnswer(route, 200, b"application/json", body=answer)
    return UpstreamAnswer(
        route, 200, b"text/event-stream", first_chunk=answer[0], rest=_iterate(answer[1:])
    )


UPSTREAM_KEEPALIVE_SECONDS = 4.0
# Times a request is sent again when its connection was closed before any answer.
CONNECTION_RETRIES = 2


class UpstreamClient:
    """Send attempts to channels over one pooled aiohttp session per event loop.

    aiohttp, not httpx: on this project's benchmark httpx's pool served 343 requests/s
    at 50 concurrent requests against aiohttp's 1,500 (bench/relay/README.md).
    """

    def __init__(self) -> None:
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=1000,
                    ttl_dns_cache=300,
                    # Idle connections are dropped before common servers drop them
                    # (uvicorn after 5 s): reusing one the upstream already closed
                    # fails, and after a quiet spell a burst would find many.
                    keepalive_timeout=UPSTREAM_KEEPALIVE_SECONDS,
                ),
                # Bytes pass through as the upstream sent them: never decompressed here.
                auto_decompress=False,
                headers={"accept-encoding": "identity"},
                trust_env=False,
            )
            self._sessions[loop] = session
        return session

    async def aclose(self) -> None:
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()

    async def attempt(
        self,
        route: ChannelRoute,
        endpoint: Endpoint,
        *,
        body: dict[str, Any],
        model: str,
        stream: bool,
        client_headers: dict[bytes, bytes],
        completion_allowed: int | None = None,
    ) -> UpstreamAnswer:
        """Return the channel's answer, or raise AttemptFailed.

        `completion_allowed` is the completion the call's hold assumed: sent as the
        limit to a kind whose API requires one when the client set none.
        """
        if route.kind == "mock":
            payload = dict(body, model=route.upstream_model(model))
            if stream and endpoint.name in ASKS_STREAM_USAGE:
                payload = _with_stream_usage(payload)
            if route.parameter_overrides and endpoint.has_completion:
                payload = parameters_apply(payload, route.parameter_overrides)
            return _mock_answer(route, endpoint, payload, payload["model"], stream)
        if route.api_key is None:
            raise AttemptFailed("channel key unreadable", is_retryable=True)
        if completion_allowed and route.kind in COMPLETION_LIMIT_KINDS:
            body = _with_completion_limit(body, completion_allowed, endpoint)
        outbound = CHANNEL_KINDS[route.kind](
            route, endpoint, body=body, model=model, stream=stream, client_headers=client_headers
        )
        if route.parameter_overrides and endpoint.has_completion:
            outbound.payload = parameters_apply(outbound.payload, route.parameter_overrides)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=route.connect_timeout_seconds,
            sock_read=route.read_timeout_seconds,
        )
        data = json.dumps(outbound.payload, separators=(",", ":")).encode()
        try:
            for tries_left in range(CONNECTION_RETRIES, -1, -1):
                try:
                    response = await self.session().post(
                        outbound.url, data=data, headers=outbound.headers, timeout=timeout
                    )
                    break
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                    # A pooled keep-alive connection the upstream had already closed
                    # (the pool may hold several after a burst): no answer came back,
                    # so send the request again.
                    if not tries_left:
                        raise
        except TimeoutError:
            raise AttemptFailed("timeout", is_retryable=True) from None
        except aiohttp.ClientError as error:
            raise AttemptFailed(f"connection: {type(error).__name__}", is_retryable=True) from None
        try:
            return await self._read_answer(route, response, stream=stream, outbound=outbound)
        except BaseException:
            response.close()
            raise

    async def _read_answer(
        self,
        route: ChannelRoute,
        response: aiohttp.ClientResponse,
        *,
        stream: bool,
        outbound: "Outbound",
    ) -> UpstreamAnswer:
        content_type = response.headers.get("content-type", "application/json").encode("latin-1")
        try:
            if response.status >= 400 or not stream:
                body = await response.read()
                response.release()
            else:
                chunks = response.content.iter_any()
                first_chunk = await anext(chunks, b"")
        except TimeoutError:
            raise AttemptFailed("timeout", is_retryable=True) from None
        except aiohttp.ClientError as error:
            raise AttemptFailed(f"connection: {type(error).__name__}", is_retryable=True) from None
        status = response.status
        if status == 429:
            raise AttemptFailed(
                f"HTTP {status}",
                is_retryable=True,
                status_code=status,
                retry_after=retry_after_seconds(response.headers),
                # OpenAI's code for a key whose account is out of credit (only the
                # code is looked for, nothing of the message is kept).
                is_quota_exhausted=b'"insufficient_quota"' in body,
            )
        if status >= 500 or status == 401:
            raise AttemptFailed(f"HTTP {status}", is_retryable=True, status_code=status)
        if status == 403 and outbound.refuses_key is None:
            raise AttemptFailed(f"HTTP {status}", is_retryable=True, status_code=status)
        if status >= 400 and outbound.refuses_key is not None and outbound.refuses_key(body):
            raise AttemptFailed(f"HTTP {status}, key refused", is_retryable=True, status_code=401)
        if status >= 400:
            if outbound.error is not None:
                body = outbound.error(status, body)
                content_type = b"application/json"
            raise AttemptFailed(
                f"HTTP {status}",
                is_retryable=False,
                status_code=status,
                body=body,
                content_type=content_type,
            )
        if not stream:
            if outbound.answer is not None:
                try:
                    translated = outbound.answer(json.loads(body))
                except (
                    ValueError,
                    AttributeError,
                    TypeError,
                    KeyError,
                    IndexError,
                    RecursionError,
                ):
                    raise AttemptFailed("unreadable answer", is_retryable=True) from None
                body = json.dumps(translated, separators=(",", ":")).encode()
                content_type = b"application/json"
            return UpstreamAnswer(route, status, content_type, body=body)
        if not first_chunk:
            raise AttemptFailed("empty stream", is_retryable=True)
        return UpstreamAnswer(
            route,
            status,
            content_type,
            first_chunk=first_chunk,
            rest=chunks,
            translator=outbound.stream,
            response=response,
        )


class StreamTranslator(Protocol):
    """Turns an upstream's stream into the client's format, chunk by chunk."""

    def feed(self, chunk: bytes) -> bytes:
        """Return the client's bytes for what `chunk` completes."""
        ...

    def finish(self) -> bytes:
        """Return the client's closing bytes (once)."""
        ...


@dataclass
class Outbound:
    """What one attempt sends to a channel, and how its answer becomes the client's.

    Built by the channel kind's function in `CHANNEL_KINDS`; when the channel speaks
    another format than the endpoint called, `answer`, `stream` and `error` translate
    the upstream's whole answer, its stream and its refusals into the client's format
    (the relay then reads usage from what the client gets).
    """

    url: str
    headers: dict[str, str]
    payload: dict[str, Any]
    answer: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    stream: StreamTranslator | None = None
    error: Callable[[int, bytes], bytes] | None = None
    # Whether a 4xx other than 401 says the key itself is refused (Gemini answers a wrong
    # key with 400): the key is then set aside as after a 401. With it set, a 403 it does
    # not recognise refuses the request (a client can cause one), passed back as it is.
    refuses_key: Callable[[bytes], bool] | None = None


def _with_stream_usage(payload: dict[str, Any]) -> dict[str, Any]:
    """Ask an OpenAI-compatible upstream for a stream's usage (what the relay bills by)."""
    options = payload.get("stream_options")
    payload["stream_options"] = {
        **(options if isinstance(options, dict) else {}),
        "include_usage": True,
    }
    return payload


# Kinds whose API requires a completion limit (Anthropic's `max_tokens`).
COMPLETION_LIMIT_KINDS = frozenset({"anthropic"})


def _with_completion_limit(
    body: dict[str, Any], completion_allowed: int, endpoint: Endpoint
) -> dict[str, Any]:
    """Return `body` with the hold's completion as its limit if it sets none (a request in
    Anthropic's own format must set one: the vendor's refusal says so)."""
    if endpoint.anthropic_format or not endpoint.has_completion:
        return body
    if any(body.get(key) is not None for key in ("max_completion_tokens", "max_tokens")):
        return body
    return dict(body, max_tokens=completion_allowed)


def _bearer_headers(route: ChannelRoute) -> dict[str, str]:
    # The operator's headers, over the client's (never a key's or the framing's: refused
    # when stored, and left out when loaded).
    assert route.api_key is not None
    return {
        "content-type": "application/json",
        **dict(route.header_overrides),
        "authorization": f"Bearer {route.api_key}",
    }


def openai_outbound(
    route: ChannelRoute,
    endpoint: Endpoint,
    *,
    body: dict[str, Any],
    model: str,
    stream: bool,
    client_headers: dict[bytes, bytes],
) -> Outbound:
    """An OpenAI-compatible channel: OpenAI's endpoints as sent, Messages translated to chat."""
    upstream_model = route.upstream_model(model)
    headers = _bearer_headers(route)
    if endpoint is MESSAGES:
        return Outbound(
            url=route.base_url + CHAT.upstream_path,
            headers=headers,
            payload=translate.messages_to_chat_request(body, model=upstream_model),
            answer=functools.partial(translate.chat_response_to_message, model=model),
            stream=translate.ChatStreamToMessageEvents(model=model) if stream else None,
            error=translate.openai_error_to_anthropic,
        )
    payload = dict(body, model=upstream_model)
    return Outbound(
        url=route.base_url + endpoint.upstream_path,
        headers=headers,
        payload=(
            _with_stream_usage(payload)
            if stream and endpoint.name in ASKS_STREAM_USAGE
            else payload
        ),
    )


def azure_outbound(
    route: ChannelRoute,
    endpoint: Endpoint,
    *,
    body: dict[str, Any],
    model: str,
    stream: bool,
    client_headers: dict[bytes, bytes],
) -> Outbound:
    """An Azure OpenAI channel: an OpenAI-compatible one (Messages translated to chat) sent
    to the model's deployment with the `api-version` and the `api-key` header (`relay.azure`)."""
    outbound = openai_outbound(
        route, endpoint, body=body, model=model, stream=stream, client_headers=client_headers
    )
    path = CHAT.upstream_path if endpoint is MESSAGES else endpoint.upstream_path
    outbound.url = azure.deployment_url(route, path, route.upstream_model(model))
    outbound.headers = azure.key_headers(route)
    return outbound


def anthropic_outbound(
    route: ChannelRoute,
    endpoint: Endpoint,
    *,
    body: dict[str, Any],
    model: str,
    stream: bool,
    client_headers: dict[bytes, bytes],
) -> Outbound:
    """An Anthropic channel: Messages as sent, with the client's API version and betas;
    chat completions translated (`relay.anthropic_chat`), with neither."""
    assert route.api_key is not None
    if endpoint is CHAT:
        # A chat client's `anthropic-beta` and `anthropic-version` are not passed on: the
        # translation is written for the default version, and a beta could turn on
        # what is billed above the catalog's price (a 1M-token context).
        return _anthropic_chat_outbound(
            route, body=body, model=model, stream=stream, headers=_anthropic_headers(route, {})
        )
    return Outbound(
        url=route.base_url + endpoint.upstream_path,
        headers=_anthropic_headers(route, client_headers),
        payload=dict(body, model=route.upstream_model(model)),
    )


def _anthropic_chat_outbound(
    route: ChannelRoute, *, body: dict[str, Any], model: str, stream: bool, headers: dict[str, str]
) -> Outbound:
    """Chat completions on an Anthropic channel: translated both ways (`relay.anthropic_chat`)."""
    return Outbound(
        url=route.base_url + MESSAGES.upstream_path,
        headers=headers,
        payload=anthropic_chat.chat_to_messages_request(body, model=route.upstream_model(model)),
        answer=functools.partial(anthropic_chat.message_to_chat_response, model=model),
        stream=anthropic_chat.MessageEventsToChatStream(model=model) if stream else None,
        error=anthropic_chat.anthropic_error_to_openai,
    )


def _anthropic_headers(route: ChannelRoute, client_headers: dict[bytes, bytes]) -> dict[str, str]:
    """Anthropic's headers: the client's API version and betas, the operator's, the key."""
    assert route.api_key is not None
    headers = {"content-type": "application/json"}
    headers["anthropic-version"] = client_headers.get(b"anthropic-version", b"2023-06-01").decode(
        "latin-1"
    )
    if b"anthropic-beta" in client_headers:
        headers["anthropic-beta"] = client_headers[b"anthropic-beta"].decode("latin-1")
    headers.update(route.header_overrides)
    headers["x-api-key"] = route.api_key
    return headers


def gemini_outbound(
    route: ChannelRoute,
    endpoint: Endpoint,
    *,
    body: dict[str, Any],
    model: str,
    stream: bool,
    client_headers: dict[bytes, bytes],
) -> Outbound:
    """A Gemini channel: chat completions (and Messages, made chat first) translated to
    `generateContent`, and its answers back (`relay.gemini`)."""
    assert endpoint is CHAT or endpoint is MESSAGES
    upstream_model = route.upstream_model(model)
    url = gemini.generate_url(route.base_url, upstream_model, stream=stream)
    if endpoint is MESSAGES:
        chat = translate.messages_to_chat_request(body, model=upstream_model)
        return Outbound(
            url=url,
            headers=gemini.key_headers(route),
            payload=gemini.chat_to_gemini_request(chat),
            answer=functools.partial(gemini.messages_answer, model=model),
            stream=gemini.messages_stream(model=model) if stream else None,
            error=gemini.messages_error,
            refuses_key=gemini.refuses_key,
        )
    return Outbound(
        url=url,
        headers=gemini.key_headers(route),
        payload=gemini.chat_to_gemini_request(body),
        answer=functools.partial(gemini.gemini_to_chat_answer, model=model),
        stream=gemini.GeminiStreamToChatChunks(model=model) if stream else None,
        error=gemini.gemini_error_to_openai,
        refuses_key=gemini.refuses_key,
    )


# How each channel kind (but the mock, answered in process) is sent a request.
CHANNEL_KINDS: dict[str, Callable[..., Outbound]] = {
    "openai": openai_outbound,
    "anthropic": anthropic_outbound,
    "azure": azure_outbound,
    "gemini": gemini_outbound,
}


def _media_failure(reason: str) -> AttemptFailed:
    """An attempt that failed after the request may have reached the upstream: not retried
    elsewhere (a second channel could generate, and bill upstream, the same work twice)."""
    return AttemptFailed(reason, is_retryable=False, status_code=502, body=b"", was_sent=True)


async def attempt_media(
    client: UpstreamClient,
    route: ChannelRoute,
    endpoint: Endpoint,
    *,
    fields: dict[str, Any],
    model: str,
    build: Callable[[str], tuple[bytes, str]],
) -> UpstreamAnswer:
    """Send an image or audio request to one channel; return its answer or raise.

    `build(upstream_model)` returns the body to send and its content type; `fields` are
    the request's values (its JSON body or its form's text fields), which the mock
    channel answers from. An AttemptFailed is retryable only when the request cannot
    have reached the upstream (no connection, the channel's key unreadable) or the
    upstream refused it before doing anything (401, 403, 429).
    """
    upstream_model = route.upstream_model(model)
    if route.kind == "mock":
        content_type, body = mock.media_answer(endpoint.upstream_path, fields) or (b"", b"")
        return UpstreamAnswer(route, 200, content_type, body=body)
    if route.api_key is None:
        raise AttemptFailed("channel key unreadable", is_retryable=True)
    data, body_type = build(upstream_model)
    if route.kind == "azure":
        url = azure.deployment_url(route, endpoint.upstream_path, upstream_model)
        headers = {**azure.key_headers(route), "content-type": body_type}
    else:
        url = route.base_url + endpoint.upstream_path
        headers = {"content-type": body_type, "authorization": f"Bearer {route.api_key}"}
    timeout = aiohttp.ClientTimeout(
        total=None, connect=route.connect_timeout_seconds, sock_read=route.read_timeout_seconds
    )
    try:
        response = await client.session().post(url, data=data, headers=headers, timeout=timeout)
    except aiohttp.ConnectionTimeoutError:
        raise AttemptFailed("connect timeout", is_retryable=True) from None
    except aiohttp.ClientConnectorError as error:
        raise AttemptFailed(f"connection: {type(error).__name__}", is_retryable=True) from None
    except TimeoutError:
        raise _media_failure("timeout after sending") from None
    except aiohttp.ClientError as error:
        raise _media_failure(f"connection after sending: {type(error).__name__}") from None
    try:
        answer_type = response.headers.get("content-type", "application/json").encode("latin-1")
        status = response.status
        if status in (401, 403, 429):
            response.release()
            raise AttemptFailed(f"HTTP {status}", is_retryable=True, status_code=status)
        if status >= 500:
            response.release()
            raise _media_failure(f"HTTP {status}")
        if status >= 400 or not endpoint.answers_binary:
            try:
                body = await response.read()
            except TimeoutError:
                raise _media_failure("timeout after sending") from None
            except aiohttp.ClientError as error:
                raise _media_failure(f"answer cut off: {type(error).__name__}") from None
            response.release()
            if status >= 400:
                raise AttemptFailed(
                    f"HTTP {status}",
                    is_retryable=False,
                    status_code=status,
                    body=body,
                    content_type=answer_type,
                )
            return UpstreamAnswer(route, status, answer_type, body=body)
        chunks = response.content.iter_any()
        try:
            first_chunk = await anext(chunks, b"")
        except TimeoutError:
            raise _media_failure("timeout after sending") from None
        except aiohttp.ClientError as error:
            raise _media_failure(f"answer cut off: {type(error).__name__}") from None
        return UpstreamAnswer(
            route, status, answer_type, first_chunk=first_chunk, rest=chunks, response=response
        )
    except BaseException:
        response.close()
        raise
