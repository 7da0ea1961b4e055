"""Forward a call to its channels and pass the answer back: whole, or streamed.

Failover: a channel that fails before anything reached the client (connect error,
5xx, 429) is counted against and the next one is tried; an upstream's refusal of
the request itself (4xx) is passed back as it is. Only sizes, counts and status
codes are read from answers: their content is never stored or logged.
"""

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext_noop

from . import translate, upstream
from .calls import Call
from .http import RelayError, request_language, send_error, send_json
from .selectors import ChannelRoute
from .usage import (
    StreamUsageReader,
    Usage,
    estimate_answer_tokens,
    usage_from_anthropic,
    usage_from_openai,
)

logger = logging.getLogger("relay")

# Channels tried per request before the failure is answered: a second and a third
# chance on another channel, without letting one request wait on every channel.
MAX_ATTEMPTS = 3


@dataclass
class Outcome:
    """What happened to a forwarded request: the facts its log row records."""

    status_code: int = 200
    usage: Usage = field(default_factory=Usage)
    route: ChannelRoute | None = None
    error_code: str = ""
    first_token_ms: int | None = None
    is_answered: bool = False


async def forward(
    call: Call,
    receive: Any,
    send: Any,
    *,
    client: upstream.UpstreamClient,
    channel_failed: Callable[[ChannelRoute, str], None],
    channel_recovered: Callable[[ChannelRoute], None],
) -> Outcome:
    """Try the call's channels in routing order; answer the client; say what happened."""
    endpoint = call.endpoint
    request_id_header = (b"x-request-id", call.request_id.encode())
    last_failure: upstream.AttemptFailed | None = None
    for route in call.routes[:MAX_ATTEMPTS]:
        try:
            answer = await client.attempt(
                route,
                endpoint,
                body=call.body,
                model=call.model,
                stream=call.stream,
                client_headers=call.headers,
            )
        except upstream.AttemptFailed as failure:
            last_failure = failure
            if failure.is_retryable:
                channel_failed(route, failure.reason)
                continue
            error_body = failure.body
            if endpoint.anthropic_format and route.kind != "anthropic":
                error_body = translate.openai_error_to_anthropic(failure.status_code, failure.body)
            await send_json(send, failure.status_code, error_body, [request_id_header])
            return Outcome(
                status_code=failure.status_code, route=route, error_code="upstream_refused"
            )
        if route.consecutive_failures:
            channel_recovered(route)
        if answer.body is not None:
            return await _send_answer(send, answer, call)
        return await _send_stream(receive, send, answer, call)
    reason = last_failure.reason if last_failure else "no attempt"
    logger.warning(
        "Request %s: every channel failed for %s (last: %s)", call.request_id, call.model, reason
    )
    await send_error(
        send,
        RelayError(
            502,
            gettext_noop("Every channel for '%(model)s' failed; try again shortly."),
            code="upstream_error",
            params={"model": call.model},
        ),
        anthropic_format=endpoint.anthropic_format,
        language=request_language(call.headers),
    )
    return Outcome(status_code=502, error_code="upstream_error")


async def _send_answer(send: Any, answer: upstream.UpstreamAnswer, call: Call) -> Outcome:
    assert answer.body is not None
    endpoint = call.endpoint
    usage: Usage | None = None
    try:
        payload = json.loads(answer.body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        usage = (
            usage_from_anthropic(payload)
            if endpoint.anthropic_format
            else usage_from_openai(payload)
        )
    # No counts at all (or zeros, e.g. a translated answer whose upstream gave none).
    if usage is None or not (usage.prompt_tokens or usage.completion_tokens):
        usage = Usage(
            prompt_tokens=call.prompt_tokens,
            completion_tokens=estimate_answer_tokens(payload) if endpoint.has_completion else 0,
            is_estimated=True,
        )
    headers = [
        (b"content-type", answer.content_type),
        (b"content-length", str(len(answer.body)).encode()),
        (b"x-request-id", call.request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": answer.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
    return Outcome(
        status_code=answer.status_code, usage=usage, route=answer.route, is_answered=True
    )


async def _send_stream(
    receive: Any, send: Any, answer: upstream.UpstreamAnswer, call: Call
) -> Outcome:
    reader = StreamUsageReader(
        anthropic=call.endpoint.anthropic_format and answer.translator is None
    )
    outcome = Outcome(status_code=200, route=answer.route, is_answered=True)
    outcome.first_token_ms = int((time.perf_counter() - call.started) * 1000)
    translator = answer.translator
    headers = [
        (b"content-type", b"text/event-stream" if translator else answer.content_type),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
        (b"x-request-id", call.request_id.encode()),
    ]

    async def pump() -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        chunk = answer.first_chunk
        rest = answer.rest
        assert rest is not None
        while True:
            reader.feed(chunk)
            out = translator.feed(chunk) if translator else chunk
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
            try:
                chunk = await anext(rest)
            except StopAsyncIteration:
                break
        closing = translator.finish() if translator else b""
        await send({"type": "http.response.body", "body": closing, "more_body": False})

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            continue

    pumping = asyncio.ensure_future(pump())
    watching = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
        if not pumping.done():
            pumping.cancel()
            outcome.status_code = 499
            outcome.error_code = "client_disconnected"
        elif pumping.exception() is not None:
            # The upstream broke off after bytes reached the client: no retry is possible.
            outcome.error_code = "upstream_stream_interrupted"
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watching.cancel()
        await asyncio.gather(pumping, watching, return_exceptions=True)
        await answer.aclose()
    outcome.usage = reader.result(prompt_tokens=call.prompt_tokens)
    return outcome
