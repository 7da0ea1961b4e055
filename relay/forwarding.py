"""Forward a call to its channels and pass the answer back: whole, or streamed.

Failover: a channel that fails before anything reached the client (connect error,
5xx, 429) is counted against and the next one is tried; an upstream's refusal of
the request itself (4xx) is passed back as it is. Within a channel of several keys, a
key the upstream refuses (401, 403, 429: nothing was done that it bills) is set aside
and the channel's next key is tried first (`relay.keys`); a channel whose every key
is set aside is skipped as a failed one. A `/v1/messages` request an OpenAI channel
cannot carry (`relay.translate.Untranslatable`) skips that channel without counting it
against it, and is refused (400) if no other channel takes it. Only sizes, counts and status
codes are read from answers: their content is never stored or logged.
"""

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext_noop

from . import translate, upstream
from .calls import Call, client_wants_stream_usage, completion_allowed
from .http import RelayError, request_language, send_error, send_json
from .keys import MAX_KEYS_PER_ATTEMPT, key_rotation, set_aside_seconds
from .selectors import ChannelRoute
from .usage import (
    StreamUsageReader,
    Usage,
    estimate_answer_tokens,
    usage_from_anthropic,
    usage_from_openai,
    usage_from_responses,
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
    # Images an image answer holds (what an image call is charged by).
    images: int = 0
    # The id of the response a Responses call made (`relay.conversations` remembers
    # which channel made it).
    response_id: str = ""


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
    # A request this channel kind cannot carry (`relay.translate`): another channel (an
    # Anthropic one) may, so it is not an attempt, and no channel's failure.
    untranslatable: translate.Untranslatable | None = None
    attempts = 0
    for route in call.routes:
        if attempts == MAX_ATTEMPTS:
            break
        try:
            answer = await _attempt_keys(client, route, call)
        except translate.Untranslatable as refusal:
            if refusal.status_code == 400:
                untranslatable = refusal
                continue
            # The upstream's answer cannot be passed on (a tool call it cannot read).
            await _send_untranslatable(send, refusal, call)
            return Outcome(status_code=refusal.status_code, route=route, error_code=refusal.code)
        except upstream.AttemptFailed as failure:
            attempts += 1
            last_failure = failure
            if failure.is_retryable:
                channel_failed(route, failure.reason)
                continue
            await send_json(send, failure.status_code, failure.body, [request_id_header])
            return Outcome(
                status_code=failure.status_code, route=route, error_code="upstream_refused"
            )
        if route.consecutive_failures:
            channel_recovered(route)
        if answer.body is not None:
            return await _send_answer(send, answer, call)
        return await _send_stream(receive, send, answer, call)
    if untranslatable is not None and last_failure is None:
        await _send_untranslatable(send, untranslatable, call)
        return Outcome(status_code=400, error_code=untranslatable.code)
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


async def _send_untranslatable(send: Any, refusal: translate.Untranslatable, call: Call) -> None:
    error = RelayError(
        refusal.status_code,
        refusal.message,
        code=refusal.code,
        params=refusal.params,
        headers=[(b"x-request-id", call.request_id.encode())],
    )
    await send_error(
        send,
        error,
        anthropic_format=call.endpoint.anthropic_format,
        language=request_language(call.headers),
    )


async def _attempt_keys(
    client: upstream.UpstreamClient, route: ChannelRoute, call: Call
) -> upstream.UpstreamAnswer:
    """Return the channel's answer, trying its keys in turn; raise AttemptFailed if none answers.

    A key the upstream refuses is set aside and the next is tried at once, up to
    MAX_KEYS_PER_ATTEMPT; what fails for another reason fails the channel.
    """

    async def attempt(keyed: ChannelRoute) -> upstream.UpstreamAnswer:
        return await client.attempt(
            keyed,
            call.endpoint,
            body=call.body,
            model=call.model,
            stream=call.stream,
            client_headers=call.headers,
            # Anthropic requires a limit: the one the hold assumed (relay.calls).
            completion_allowed=completion_allowed(body=call.body, price=call.price),
        )

    if not route.api_keys:
        # The mock, a channel without a key, or one whose keys no configured key opens.
        return await attempt(route)
    turns = key_rotation.keys_in_turn(route)
    if not turns:
        raise upstream.AttemptFailed("every key set aside", is_retryable=True)
    last_failure: upstream.AttemptFailed | None = None
    for turn in turns[:MAX_KEYS_PER_ATTEMPT]:
        try:
            return await attempt(route if turn.key == route.api_key else route.with_key(turn.key))
        except upstream.AttemptFailed as failure:
            seconds = set_aside_seconds(
                failure.status_code,
                retry_after=failure.retry_after,
                is_quota_exhausted=failure.is_quota_exhausted,
            )
            if seconds is None or not failure.is_retryable:
                # Not the key's fault (a 403 refusing the request itself, say).
                raise
            key_rotation.set_aside(route, turn, seconds=seconds, status_code=failure.status_code)
            last_failure = failure
    assert last_failure is not None
    raise last_failure


async def _send_answer(send: Any, answer: upstream.UpstreamAnswer, call: Call) -> Outcome:
    assert answer.body is not None
    endpoint = call.endpoint
    usage: Usage | None = None
    try:
        payload = json.loads(answer.body)
    except ValueError:
        payload = None
    response_id = ""
    if isinstance(payload, dict):
        if endpoint is upstream.RESPONSES:
            usage = usage_from_responses(payload)
            response_id = payload["id"] if isinstance(payload.get("id"), str) else ""
        elif endpoint.anthropic_format:
            usage = usage_from_anthropic(payload)
        else:
            usage = usage_from_openai(payload)
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
        status_code=answer.status_code,
        usage=usage,
        route=answer.route,
        is_answered=True,
        response_id=response_id,
    )


# How OpenAI ends each chunk of a stream that asked for usage.
NULL_USAGE_TAIL = b',"usage":null}'


class UnaskedUsageFilter:
    """Take out of an OpenAI-shaped SSE stream the usage its client did not ask for.

    The relay asks every upstream for usage (`stream_options.include_usage`) to bill the
    stream; a client that did not ask gets the stream it would have had without: the
    usage-only chunk (empty `choices`) is dropped with its blank line, and a `usage`
    field on other chunks (null on every chunk from OpenAI) is removed. The bytes are
    read for usage (`StreamUsageReader`) before they pass through here.
    """

    def __init__(self) -> None:
        self._pending = b""
        # A data line was dropped: the blank line that ends its event goes too.
        self._dropped = False

    def feed(self, chunk: bytes) -> bytes:
        """Return what of `chunk` (with what was left of the previous one) the client gets."""
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        kept = [line for line in map(self._line, lines) if line is not None]
        return b"".join(line + b"\n" for line in kept)

    def finish(self) -> bytes:
        """Return the last line if the stream ended without a line break."""
        pending, self._pending = self._pending, b""
        line = self._line(pending) if pending else None
        return line or b""

    def _line(self, line: bytes) -> bytes | None:
        stripped = line.strip()
        if self._dropped:
            self._dropped = False
            if not stripped:
                return None
        if not stripped.startswith(b"data:") or b'"usage"' not in stripped:
            return line
        if stripped.endswith(NULL_USAGE_TAIL):
            # OpenAI's chunk: a null usage last, taken off without parsing the chunk (a
            # quote after a comma is outside any string; the brace closes the chunk).
            cut = line.rfind(NULL_USAGE_TAIL)
            return line[:cut] + b"}" + line[cut + len(NULL_USAGE_TAIL) :]
        try:
            payload = json.loads(stripped[5:])
        except ValueError:
            return line
        if not isinstance(payload, dict) or "usage" not in payload:
            return line
        if payload.get("choices") == [] and isinstance(payload["usage"], dict):
            # The usage chunk (a chunk with empty choices and no usage, such as Azure's
            # content filter results, is the client's: only its null usage goes).
            self._dropped = True
            return None
        del payload["usage"]
        ending = b"\r" if line.endswith(b"\r") else b""
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + ending


async def _send_stream(
    receive: Any, send: Any, answer: upstream.UpstreamAnswer, call: Call
) -> Outcome:
    # Usage is read from what the client gets (a translated stream carries it over).
    responses = call.endpoint is upstream.RESPONSES
    reader = StreamUsageReader(anthropic=call.endpoint.anthropic_format, responses=responses)
    # What the client did not ask for is read for billing, then left out (a Responses
    # stream always carries its usage: nothing was asked for it).
    usage_filter = (
        UnaskedUsageFilter()
        if call.endpoint.name in upstream.ASKS_STREAM_USAGE
        and not client_wants_stream_usage(call.body)
        else None
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
            out = translator.feed(chunk) if translator else chunk
            reader.feed(out)
            if usage_filter:
                out = usage_filter.feed(out)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
            try:
                chunk = await anext(rest)
            except StopAsyncIteration:
                break
        closing = translator.finish() if translator else b""
        reader.feed(closing)
        if usage_filter:
            closing = usage_filter.feed(closing) + usage_filter.finish()
        await send({"type": "http.response.body", "body": closing, "more_body": False})

    await _pass_through(receive, send, pump(), answer, outcome)
    outcome.usage = reader.result(prompt_tokens=call.prompt_tokens)
    if outcome.usage.is_estimated:
        # A translated stream cut short before its usage chunk: what the upstream's own
        # events said so far beats an estimate.
        read = getattr(translator, "usage", None)
        found = read() if read is not None else None
        if found is not None and (found.prompt_tokens or found.completion_tokens):
            outcome.usage = found
    outcome.response_id = reader.response_id
    return outcome


async def forward_media(
    call: Call,
    receive: Any,
    send: Any,
    *,
    client: upstream.UpstreamClient,
    build: Callable[[str], tuple[bytes, str]],
    channel_failed: Callable[[ChannelRoute, str], None],
    channel_recovered: Callable[[ChannelRoute], None],
) -> Outcome:
    """Send an image or audio call to its channels; answer the client; say what happened.

    Unlike text, a call that may have reached an upstream is never tried on another
    channel: the first upstream may have made the images or the speech (and billed for
    them) before failing, and a second would make them again. Only a failure before the
    request was sent (no connection, the channel's key unreadable) or a refusal before
    any work (401, 403, 429) moves on to the next channel (relay/README.md).
    """
    request_id_header = (b"x-request-id", call.request_id.encode())
    last_failure: upstream.AttemptFailed | None = None
    for route in call.routes[:MAX_ATTEMPTS]:
        try:
            answer = await upstream.attempt_media(
                client, route, call.endpoint, fields=call.body, model=call.model, build=build
            )
        except upstream.AttemptFailed as failure:
            last_failure = failure
            if failure.is_retryable:
                channel_failed(route, failure.reason)
                continue
            if failure.was_sent:
                channel_failed(route, failure.reason)
                logger.warning(
                    "Request %s: %s failed after the request was sent (%s); not retried",
                    call.request_id,
                    call.model,
                    failure.reason,
                )
                await send_error(
                    send,
                    RelayError(
                        502,
                        gettext_noop(
                            "The channel for '%(model)s' failed after the request reached it. "
                            "It was not sent to another channel, which could have made it "
                            "twice; nothing was charged."
                        ),
                        code="upstream_error",
                        params={"model": call.model},
                    ),
                    language=request_language(call.headers),
                )
                return Outcome(status_code=502, route=route, error_code="upstream_error")
            await send_json(send, failure.status_code, failure.body, [request_id_header])
            return Outcome(
                status_code=failure.status_code, route=route, error_code="upstream_refused"
            )
        if route.consecutive_failures:
            channel_recovered(route)
        if answer.body is not None:
            return await _send_media_answer(send, answer, call)
        return await _send_binary_stream(receive, send, answer, call)
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
        language=request_language(call.headers),
    )
    return Outcome(status_code=502, error_code="upstream_error")


def images_in_answer(body: bytes) -> int:
    """Return how many images an images answer holds (its `data` list)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return 0
    data = payload.get("data") if isinstance(payload, dict) else None
    return len(data) if isinstance(data, list) else 0


async def _send_media_answer(send: Any, answer: upstream.UpstreamAnswer, call: Call) -> Outcome:
    assert answer.body is not None
    headers = [
        (b"content-type", answer.content_type),
        (b"content-length", str(len(answer.body)).encode()),
        (b"x-request-id", call.request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": answer.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
    outcome = Outcome(status_code=answer.status_code, route=answer.route, is_answered=True)
    if call.endpoint in (upstream.IMAGES_GENERATIONS, upstream.IMAGES_EDITS):
        outcome.images = images_in_answer(answer.body)
    return outcome


async def _send_binary_stream(
    receive: Any, send: Any, answer: upstream.UpstreamAnswer, call: Call
) -> Outcome:
    """Pass a file (speech) through as it arrives; a client gone first ends it (499)."""
    outcome = Outcome(status_code=200, route=answer.route, is_answered=True)
    outcome.first_token_ms = int((time.perf_counter() - call.started) * 1000)
    headers = [
        (b"content-type", answer.content_type),
        (b"x-request-id", call.request_id.encode()),
    ]

    async def pump() -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        chunk = answer.first_chunk
        rest = answer.rest
        assert rest is not None
        while True:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            try:
                chunk = await anext(rest)
            except StopAsyncIteration:
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    await _pass_through(receive, send, pump(), answer, outcome)
    return outcome


async def _pass_through(
    receive: Any,
    send: Any,
    pump: Coroutine[Any, Any, None],
    answer: upstream.UpstreamAnswer,
    outcome: Outcome,
) -> None:
    """Run `pump` (which sends an upstream's stream on) until it ends or the client goes.

    A client gone first ends it: 499 `client_disconnected`. An upstream that breaks off
    after bytes reached the client cannot be retried: the answer is ended there and
    marked `upstream_stream_interrupted`. The upstream's answer is closed either way.
    """

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            continue

    pumping = asyncio.ensure_future(pump)
    watching = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
        if not pumping.done():
            pumping.cancel()
            outcome.status_code = 499
            outcome.error_code = "client_disconnected"
        elif pumping.exception() is not None:
            outcome.error_code = "upstream_stream_interrupted"
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watching.cancel()
        await asyncio.gather(pumping, watching, return_exceptions=True)
        await answer.aclose()
