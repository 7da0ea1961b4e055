"""The relay: an ASGI application serving `/v1/*` without Django's request cycle.

Per request: authenticate the token → check expiry, IP and model allow-lists →
price the model → take a concurrency slot and count the request against the RPM
limit → hold the most the request can cost in the process's credit meter → try
channels in routing order (`relay.forwarding`) → pass the answer through → settle
the actual cost with the log row's facts in the meter → free the slot. The meter
writes settled requests to the books in batches (`billing.meter`).

Request and response content is never stored or logged: only sizes, counts and
status codes leave the relay.
"""

import asyncio
import contextlib
import functools
import json
import logging
import time
import traceback
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_noop
from redis.exceptions import RedisError

from accounts.tokens import TokenInfo, atoken_authenticate
from billing.grants import UsageRefused
from billing.meter import CreditMeter
from core.clientaddress import UNKNOWN_ADDRESS, address_clean
from core.db import (
    BUSY_CODE,
    BUSY_MESSAGE,
    BUSY_RETRY_AFTER_SECONDS,
    database_busy,
    run_in_database_thread,
)
from logs.data import RequestLogData
from models_catalog.pricing import UNIT_IMAGE, billed_cached_ratio, unit_cost
from models_catalog.selectors import (
    AccountLimits,
    Line,
    ModelPrice,
    account_limits,
    aline_of,
    amodel_price,
    callable_model_names,
)

from . import counting, media, upstream
from .calls import (
    ANTHROPIC_PATHS,
    CALLS,
    COUNT_TOKENS_PATH,
    MODELS_PATH,
    Call,
    actual_cost,
    continued_prompt,
    count_tokens_body_check,
    hold_tokens,
    model_id_check,
    model_kind_refusal,
    prompt_count,
    request_body_parse,
    reservation_amount,
    responses_body_check,
    text_unit_refusal,
)
from .conversations import response_made, response_remember
from .counting import encodings_load
from .forwarding import Outcome, forward, forward_media
from .http import (
    Message,
    RelayError,
    Scope,
    api_key,
    read_body,
    request_language,
    send_error,
    send_json,
)
from .ids import unique_id
from .limits import (
    REDIS_FAILURES,
    Admission,
    LimiterUnavailable,
    LimitOutcome,
    Limits,
    limiter,
    rate_headers,
)
from .memo import LOCAL_CACHE_SECONDS, LocalMemo
from .metrics import NO_FAMILY, model_family, request_observe, upstream_error_observe
from .models import Channel
from .refusals import RefusalCounter
from .routing import candidate_routes, routing_table, routing_table_expire
from .selectors import ChannelRoute
from .services import channel_record_failure, channel_record_success

logger = logging.getLogger("relay")

# The largest request body read (413 past it): room for a long conversation with a few
# images inlined, while one request cannot make a process hold an unbounded buffer.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Bodies past this size are counted (relay.counting) on a worker thread: up to a few
# hundred milliseconds for the largest, which the event loop must not wait through.
COUNT_ON_THREAD_BYTES = 16 * 1024

INVALID_KEY_MESSAGE = gettext_noop("Invalid API key, or the token is disabled or deleted.")

# Where `_call` leaves the model family of a priced request for the request's metrics.
FAMILY_KEY = "comet.model_family"

# Every channel kind, for telling "no channel of this model speaks Responses" from "none up".
ALL_KINDS = frozenset(Channel.Kind.values)

# HTTP status of each reason the money core gives for refusing a request.
REFUSAL_STATUS = {
    "insufficient_quota": 402,
    # The token was disabled, deleted or expired between authentication and its hold.
    "invalid_api_key": 401,
    "duplicate_request": 409,
    # A payment dispute froze the account (billing.recharge).
    "account_frozen": 403,
    # The credit meter cannot write usage (database down or far behind): retry later.
    "billing_unavailable": 503,
}


def call_charge(call: Call, outcome: Outcome) -> tuple[int, RequestLogData]:
    """Return what a call costs (nothing unless it was answered) and its log row's facts."""
    price = call.price
    units = 0
    if call.unit:
        # Images are counted in the answer; characters and seconds before it was sent.
        units = outcome.images if call.unit == UNIT_IMAGE else call.units
        units = units if outcome.is_answered else 0
        assert call.unit_price is not None
        cost = (
            unit_cost(
                unit=call.unit,
                unit_price=call.unit_price,
                count=units,
                group_ratio=price.group_ratio,
            )
            if outcome.is_answered
            else 0
        )
    else:
        cost = actual_cost(usage=outcome.usage, price=price) if outcome.is_answered else 0
    log = RequestLogData(
        model=call.model,
        # The entry step gives only valid addresses; a value inet refuses here
        # would lose the row and its charge, so it is checked once more.
        client_ip=address_clean(call.address) or UNKNOWN_ADDRESS,
        status_code=outcome.status_code,
        token_name=call.token.name,
        channel_id=outcome.route.channel_id if outcome.route else None,
        prompt_tokens=outcome.usage.prompt_tokens,
        completion_tokens=outcome.usage.completion_tokens,
        cached_tokens=outcome.usage.cached_tokens,
        model_ratio=price.model_ratio or Decimal(0),
        completion_ratio=price.completion_ratio,
        group_ratio=price.group_ratio,
        cached_ratio=billed_cached_ratio(price),
        price_per_call=price.price_per_call,
        unit=call.unit,
        unit_count=units,
        unit_price=call.unit_price,
        error_code=outcome.error_code,
        latency_ms=int((time.perf_counter() - call.started) * 1000),
        first_token_ms=outcome.first_token_ms,
        is_stream=call.stream,
        usage_estimated=outcome.usage.is_estimated,
    )
    return cost, log


def rate_limit_error(
    admission: Admission, token: TokenInfo, *, account: AccountLimits, requested_tokens: int
) -> RelayError:
    """Return the 429 of a refused admission, with `Retry-After` and `x-ratelimit-*`."""
    outcome = admission.outcome
    state = admission.state
    if outcome is LimitOutcome.TPM_REQUEST_TOO_LARGE:
        # No wait helps: no Retry-After (relay/README.md).
        return RelayError(
            429,
            gettext_noop(
                "This request may use %(requested)s tokens, more than this account may use "
                "in a minute (%(limit)s): lower max_tokens or shorten the prompt."
            ),
            code="rate_limit_exceeded",
            params={"requested": requested_tokens, "limit": account.tpm_limit},
            headers=rate_headers(state),
        )
    params: dict[str, object] = {"requested": requested_tokens}
    if outcome is LimitOutcome.CONCURRENCY_EXCEEDED:
        message = gettext_noop(
            "Too many requests in flight on this token (limit %(limit)s). Retry after the "
            "time in Retry-After, or contact support for a higher limit."
        )
        params["limit"] = token.concurrency_limit
    elif outcome is LimitOutcome.RPM_EXCEEDED:
        message = gettext_noop(
            "Too many requests per minute on this token (limit %(limit)s). Retry after the "
            "time in Retry-After, or contact support for a higher limit."
        )
        params["limit"] = token.rpm_limit
    elif outcome is LimitOutcome.ACCOUNT_CONCURRENCY_EXCEEDED:
        message = gettext_noop(
            "Too many requests in flight on this account (limit %(limit)s). Retry after the "
            "time in Retry-After, or contact support for a higher limit."
        )
        params["limit"] = account.concurrency_limit
    elif outcome is LimitOutcome.ACCOUNT_RPM_EXCEEDED:
        message = gettext_noop(
            "Too many requests per minute on this account (limit %(limit)s). Retry after the "
            "time in Retry-After, or contact support for a higher limit."
        )
        params["limit"] = account.rpm_limit
    else:
        message = gettext_noop(
            "Too many tokens per minute on this account (limit %(limit)s, %(left)s left; this "
            "request may use %(requested)s). Retry after the time in Retry-After, or contact "
            "support for a higher limit."
        )
        params.update(limit=account.tpm_limit, left=max(0, state.tpm_remaining))
    return RelayError(
        429,
        message,
        code="rate_limit_exceeded",
        params=params,
        headers=rate_headers(state, refused=True),
    )


def busy_error() -> RelayError:
    """Return the 503 of a shared store that did not answer in time (the database's pool,
    Redis): nothing was forwarded or charged, and a retry a few seconds later may pass."""
    return RelayError(503, BUSY_MESSAGE, code=BUSY_CODE, retry_after=BUSY_RETRY_AFTER_SECONDS)


def _with_headers(send: Any, headers: list[tuple[bytes, bytes]]) -> Any:
    """Return `send` adding `headers` to the response's start."""
    if not headers:
        return send

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)

    return send_with_headers


def _model_object(name: str) -> dict[str, Any]:
    """Return a model as OpenAI's API lists it."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "comet"}


def _json_content_type(headers: dict[bytes, bytes]) -> None:
    """Raise 415 unless the request says its body is JSON."""
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        raise RelayError(
            415,
            gettext_noop("Send the request body as JSON (Content-Type: application/json)."),
            code="unsupported_media_type",
        )


class RelayApplication:
    """The ASGI callable for `/v1/`."""

    def __init__(self) -> None:
        # Requests are held and settled in this process's memory against money held
        # in bulk (credit grants), and written to the books in batches by the meter.
        self.meter = CreditMeter()
        self.upstream = upstream.UpstreamClient()
        self.tokens: LocalMemo[TokenInfo | None] = LocalMemo(LOCAL_CACHE_SECONDS)
        self.prices: LocalMemo[ModelPrice | None] = LocalMemo(LOCAL_CACHE_SECONDS)
        self.lines: LocalMemo[Line] = LocalMemo(LOCAL_CACHE_SECONDS)
        self.refusals = RefusalCounter()
        self._background: set[asyncio.Task[None]] = set()

    @property
    def pending_work(self) -> int:
        """Return how many settled requests and failure counts are not written yet."""
        return len(self._background) + self.meter.pending

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        status = 0

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._serve(scope, receive, observed_send)
        finally:
            request_observe(
                status=status,
                family=scope.get(FAMILY_KEY, NO_FAMILY),
                seconds=time.perf_counter() - started,
            )

    async def _serve(self, scope: Scope, receive: Any, send: Any) -> None:
        response_started = False

        async def tracked_send(message: Message) -> None:
            nonlocal response_started
            response_started = True
            await send(message)

        # Anthropic's SDK reads errors in its own shape.
        anthropic_format = scope["path"].rstrip("/") in ANTHROPIC_PATHS
        try:
            await self._route(scope, receive, tracked_send)
        except RelayError as error:
            # Accept-Language is read here, on the error path only.
            await send_error(
                send,
                error,
                anthropic_format=anthropic_format,
                language=request_language(scope["headers"]),
            )
        except ConnectionResetError:
            return
        except Exception as error:
            if response_started:
                raise
            busy = database_busy(error)
            if busy or isinstance(error, RedisError):
                if busy:
                    # Every connection of the pool was in use for the pool's timeout.
                    logger.warning("No database connection free in time: answered 503")
                else:
                    # The shared cache (tokens, lines) stalled or is unreachable.
                    logger.warning("Redis failed (%s): answered 503", type(error).__name__)
                await send_error(
                    send,
                    busy_error(),
                    anthropic_format=anthropic_format,
                    language=request_language(scope["headers"]),
                )
                return
            # Only the error's class and place: its message could quote the request.
            where = traceback.extract_tb(error.__traceback__)[-1]
            logger.error(
                "Unexpected %s in the relay at %s:%s",
                type(error).__name__,
                where.filename,
                where.lineno,
            )
            await send_error(
                send,
                RelayError(500, gettext_noop("The relay failed unexpectedly."), code="relay_error"),
                anthropic_format=anthropic_format,
                language=request_language(scope["headers"]),
            )

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The tokenizer's encodings take most of a second to load: now, not
                # during the first request.
                await asyncio.to_thread(encodings_load)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Write what was settled, give the grants back and close the connections."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.refusals.aclose()
        await run_in_database_thread(self.meter.close)
        # A closed meter takes nothing; a fresh one serves if the app starts again.
        self.meter = CreditMeter()
        await self.upstream.aclose()
        await limiter().aclose()

    async def _route(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope["path"].rstrip("/") or "/"
        method = scope["method"]
        if path == MODELS_PATH:
            if method != "GET":
                raise RelayError(
                    405, gettext_noop("Use GET for /v1/models."), code="method_not_allowed"
                )
            await self._models(scope, send)
            return
        if path.startswith(MODELS_PATH + "/"):
            if method != "GET":
                raise RelayError(
                    405,
                    gettext_noop("Use GET for /v1/models/{model}."),
                    code="method_not_allowed",
                )
            await self._model_retrieve(scope, send, path.removeprefix(MODELS_PATH + "/"))
            return
        if path == COUNT_TOKENS_PATH:
            if method != "POST":
                raise RelayError(
                    405,
                    gettext_noop("Use POST for %(path)s."),
                    code="method_not_allowed",
                    params={"path": path},
                )
            await self._count_tokens(scope, receive, send)
            return
        media_endpoint = media.MEDIA_CALLS.get(path)
        if media_endpoint is not None:
            if method != "POST":
                raise RelayError(
                    405,
                    gettext_noop("Use POST for %(path)s."),
                    code="method_not_allowed",
                    params={"path": path},
                )
            await self._media_call(scope, receive, send, media_endpoint, path)
            return
        endpoint = CALLS.get(path)
        if endpoint is None:
            raise RelayError(
                404,
                gettext_noop("Unknown API route: %(method)s %(path)s."),
                code="not_found",
                params={"method": method, "path": path},
            )
        if method != "POST":
            raise RelayError(
                405,
                gettext_noop("Use POST for %(path)s."),
                code="method_not_allowed",
                params={"path": path},
            )
        await self._call(scope, receive, send, endpoint, path)

    async def _authenticate(
        self, scope: Scope, headers: dict[bytes, bytes]
    ) -> tuple[TokenInfo, str]:
        raw_key = api_key(headers)
        if raw_key is None:
            raise RelayError(
                401,
                gettext_noop("No API key: send it as 'Authorization: Bearer sk-...'."),
                code="invalid_api_key",
            )
        token = await self.tokens.get(raw_key, lambda: atoken_authenticate(raw_key))
        if token is None:
            raise RelayError(401, INVALID_KEY_MESSAGE, code="invalid_api_key")
        # Decided where the request entered, proxies believed or not (core/clientaddress.py).
        address = scope["client"][0] if scope.get("client") else UNKNOWN_ADDRESS
        with self._counting_refusals(token, address):
            if not token.is_enabled:
                raise RelayError(401, INVALID_KEY_MESSAGE, code="invalid_api_key")
            if token.is_expired:
                raise RelayError(
                    401, gettext_noop("This token has expired."), code="invalid_api_key"
                )
            if not token.allows_ip(address):
                raise RelayError(
                    403,
                    gettext_noop("This token may not be used from %(address)s."),
                    code="ip_not_allowed",
                    params={"address": address},
                )
        return token, address

    @contextlib.contextmanager
    def _counting_refusals(
        self, token: TokenInfo, address: str, model: list[str] | None = None
    ) -> Iterator[None]:
        """Count a RelayError raised inside as a refusal of `token` (logs.models.Refusal).

        `model` holds the model name once the body names one (a one-item list the
        caller fills in).
        """
        try:
            yield
        except RelayError as error:
            self.refusals.count(
                token=token,
                status_code=error.status_code,
                error_code=error.code,
                model=model[0] if model else "",
                address=address_clean(address) or UNKNOWN_ADDRESS,
            )
            raise

    async def _line(self, token: TokenInfo) -> Line:
        """Return the line (pricing group) of the token's account."""
        group_id = token.pricing_group_id
        return await self.lines.get(group_id, lambda: aline_of(pricing_group_id=group_id))

    async def _models(self, scope: Scope, send: Any) -> None:
        """`GET /v1/models`: the models the caller's line and token may call."""
        headers = dict(scope["headers"])
        token, _address = await self._authenticate(scope, headers)
        line = await self._line(token)
        names = [
            name
            for name in await run_in_database_thread(callable_model_names)
            if line.allows_model(name)
        ]
        if token.allowed_models:
            names = [name for name in names if name in token.allowed_models]
        body = {"object": "list", "data": [_model_object(name) for name in sorted(names)]}
        await send_json(send, 200, json.dumps(body).encode())

    async def _model_retrieve(self, scope: Scope, send: Any, model: str) -> None:
        """`GET /v1/models/{model}` (openai's `models.retrieve`): the model's object if the
        caller may call it, else the refusal a call of it would get."""
        headers = dict(scope["headers"])
        token, _address = await self._authenticate(scope, headers)
        model_id_check(model)
        price = await self._model_price(token, model)
        await self._usable_model(token, model, price, path=None)
        await send_json(send, 200, json.dumps(_model_object(model)).encode())

    async def _model_price(self, token: TokenInfo, model: str) -> ModelPrice:
        """Return the model's price for the caller's group, or raise 404 for a name the
        catalog does not have (or has disabled)."""
        price = await self.prices.get(
            (model, token.pricing_group_id),
            lambda: amodel_price(model_name=model, pricing_group_id=token.pricing_group_id),
        )
        if price is None:
            raise RelayError(
                404,
                gettext_noop("The model '%(model)s' does not exist or is not available."),
                code="model_not_found",
                param="model",
                params={"model": model},
            )
        return price

    async def _routes(
        self, token: TokenInfo, model: str, endpoint: upstream.Endpoint
    ) -> list[ChannelRoute]:
        """Return the channels that may serve `model` at `endpoint` for the caller's
        group, or raise 503 when none is up."""
        routes = candidate_routes(
            await routing_table(),
            model_name=model,
            pricing_group_id=token.pricing_group_id,
            kinds=endpoint.kinds,
        )
        if not routes and endpoint is upstream.RESPONSES:
            others = candidate_routes(
                await routing_table(),
                model_name=model,
                pricing_group_id=token.pricing_group_id,
                kinds=ALL_KINDS,
            )
            if others:
                # Its channels are up but none speaks the Responses API: not a wait.
                raise RelayError(
                    400,
                    gettext_noop(
                        "The model '%(model)s' is not served through the Responses API here: "
                        "call it at /v1/chat/completions (or /v1/messages for Claude models)."
                    ),
                    code="responses_not_supported",
                    param="model",
                    params={"model": model},
                )
        if not routes:
            raise RelayError(
                503,
                gettext_noop("No channel is available for '%(model)s' right now; try again later."),
                code="no_available_channel",
                params={"model": model},
            )
        return routes

    async def _conversation_routes(
        self, token: TokenInfo, body: dict[str, Any], routes: list[ChannelRoute]
    ) -> tuple[list[ChannelRoute], int]:
        """Return the one channel that made the response `previous_response_id` names and
        that response's context in tokens (which the upstream bills again as input), or
        raise: 404 if this account made no such response (another account's id is never
        usable: our upstream keys are shared), 503 if that channel cannot serve it now."""
        try:
            made = await response_made(body["previous_response_id"], user_id=token.user_id)
        except REDIS_FAILURES:
            raise busy_error() from None
        if made is None:
            raise RelayError(
                404,
                gettext_noop(
                    "The previous response was not found: previous_response_id must name a "
                    "response made through this account in the last 30 days."
                ),
                code="previous_response_not_found",
                param="previous_response_id",
            )
        kept = [route for route in routes if route.channel_id == made.channel_id]
        if not kept:
            raise RelayError(
                503,
                gettext_noop(
                    "The channel that made the previous response is not available for "
                    "'%(model)s' right now, and no other channel holds this conversation. "
                    "Try again later, or start a new conversation without "
                    "previous_response_id."
                ),
                code="conversation_channel_unavailable",
                param="previous_response_id",
                params={"model": body.get("model")},
            )
        return kept, made.context_tokens

    async def _usable_model(
        self, token: TokenInfo, model: str, price: ModelPrice, *, path: str | None
    ) -> Line:
        """Return the caller's line, or raise the refusal of a catalog model: outside the
        token's allow-list (403), outside the line or of a kind without an endpoint yet
        (404), or of a kind `path` does not serve (400)."""
        if not token.allows_model(model):
            raise RelayError(
                403,
                gettext_noop("This token may not use the model '%(model)s'."),
                code="model_not_allowed",
                param="model",
                params={"model": model},
            )
        line = await self._line(token)
        if not line.allows_model(model):
            # 404 as for a model that does not exist (OpenAI's answer for a model an
            # organisation cannot use), saying how to get it (relay/README.md).
            raise RelayError(
                404,
                gettext_noop(
                    "The model '%(model)s' is not available on your line (%(line)s). "
                    "Contact support to have it enabled."
                ),
                code="model_not_found",
                param="model",
                params={"model": model, "line": line.display_name},
            )
        refusal = model_kind_refusal(model=model, kind=price.kind, path=path)
        if refusal is not None:
            raise refusal
        return line

    async def _count_tokens(self, scope: Scope, receive: Any, send: Any) -> None:
        """`POST /v1/messages/count_tokens` (anthropic's `messages.count_tokens`): the
        prompt of a Messages request counted here (`relay.counting`), not by the vendor;
        neither billed nor counted against the limits (relay/README.md)."""
        headers = dict(scope["headers"])
        _json_content_type(headers)
        token, address = await self._authenticate(scope, headers)
        named: list[str] = []
        with self._counting_refusals(token, address, named):
            raw_body = await read_body(receive, MAX_BODY_BYTES)
            body, model = request_body_parse(raw_body, has_completion=False)
            count_tokens_body_check(body)
            price = await self._model_price(token, model)
            named.append(model)  # a catalog model's name, never the caller's other text
            await self._usable_model(token, model, price, path=COUNT_TOKENS_PATH)
        count = functools.partial(
            counting.prompt_tokens, endpoint="messages", body=body, model=price.model_name
        )
        if len(raw_body) > COUNT_ON_THREAD_BYTES:
            tokens = await asyncio.to_thread(count)
        else:
            tokens = count()
        await send_json(
            send,
            200,
            json.dumps({"input_tokens": tokens}).encode(),
            [(b"x-request-id", unique_id().encode())],
        )

    async def _call(
        self, scope: Scope, receive: Any, send: Any, endpoint: upstream.Endpoint, path: str
    ) -> None:
        started = time.perf_counter()
        headers = dict(scope["headers"])
        _json_content_type(headers)
        token, address = await self._authenticate(scope, headers)
        # Refused from here on (never forwarded, nothing charged): counted for the logs.
        named: list[str] = []
        with self._counting_refusals(token, address, named):
            raw_body = await read_body(receive, MAX_BODY_BYTES)
            body, model = request_body_parse(raw_body, has_completion=endpoint.has_completion)
            if endpoint is upstream.RESPONSES:
                responses_body_check(body)
            price = await self._model_price(token, model)
            scope[FAMILY_KEY] = model_family(price.model_name)
            # Only a catalog model's name is kept with a refusal: any other text in "model"
            # is the caller's, and content is never stored.
            named.append(model)
            line = await self._usable_model(token, model, price, path=path)
            refusal = text_unit_refusal(price=price, path=path)
            if refusal is not None:
                raise refusal
            routes = await self._routes(token, model, endpoint)
            # The conversation a continuation carries, billed again as input.
            context_tokens = 0
            if endpoint is upstream.RESPONSES and isinstance(body.get("previous_response_id"), str):
                routes, context_tokens = await self._conversation_routes(token, body, routes)
            # The hold is the prompt as counted (with the context continued) plus the
            # completion allowed (DESIGN); the TPM limit admits on the same estimate.
            if len(raw_body) > COUNT_ON_THREAD_BYTES:
                prompt_tokens = await asyncio.to_thread(
                    prompt_count, body=body, endpoint=endpoint, price=price
                )
            else:
                prompt_tokens = prompt_count(body=body, endpoint=endpoint, price=price)
            prompt_tokens = continued_prompt(prompt_tokens, context_tokens, price=price)
            prompt_tokens, completion_tokens = hold_tokens(
                prompt_tokens=prompt_tokens,
                body=body,
                price=price,
                has_completion=endpoint.has_completion,
            )
            admission = await self._admit(token, line, tokens=prompt_tokens + completion_tokens)
            slot = admission.slot
            assert slot is not None  # `_admit` refused the request otherwise
        # What OpenAI clients read of their limits, on the answer too.
        send = _with_headers(send, rate_headers(admission.state))
        call = Call(
            request_id=unique_id(),
            endpoint=endpoint,
            token=token,
            address=address,
            headers=headers,
            body=body,
            model=model,
            stream=endpoint.can_stream and body.get("stream") is True,
            price=price,
            routes=routes,
            started=started,
            prompt_tokens=prompt_tokens,
        )
        tokens_used = 0
        try:
            amount = reservation_amount(
                price=price, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
            # The meter that holds the request settles it, even if the app is closed
            # (and given a fresh meter) while the request is in flight.
            meter = self.meter
            with self._counting_refusals(token, address, named):
                await self._hold(call, amount, meter)
            outcome: Outcome | None = None
            try:
                outcome = await forward(
                    call,
                    receive,
                    send,
                    client=self.upstream,
                    channel_failed=self._channel_failed,
                    channel_recovered=self._channel_recovered,
                )
            finally:
                # In memory, before anything that could fail or wait: nothing answered
                # goes unsettled.
                self._settle(
                    call, meter, outcome or Outcome(status_code=500, error_code="relay_error")
                )
                if outcome is not None and outcome.is_answered:
                    tokens_used = outcome.usage.prompt_tokens + outcome.usage.completion_tokens
            if outcome.response_id and outcome.route and body.get("store") is not False:
                # Which channel made it, for a continuation (`previous_response_id`).
                await response_remember(
                    outcome.response_id,
                    channel_id=outcome.route.channel_id,
                    context_tokens=outcome.usage.prompt_tokens + outcome.usage.completion_tokens,
                    user_id=token.user_id,
                )
        finally:
            # Its TPM estimate corrected to what it used: nothing unless answered.
            await limiter().release(slot, tokens_used=tokens_used)

    async def _admit(self, token: TokenInfo, line: Line, *, tokens: int) -> Admission:
        """Take a concurrency slot and count the request against RPM and `tokens` against
        TPM, or raise the 429 (or 503 without Redis) of a refused admission."""
        account = account_limits(
            line,
            concurrency_limit=token.account_concurrency_limit,
            rpm_limit=token.account_rpm_limit,
            tpm_limit=token.account_tpm_limit,
        )
        try:
            admission = await limiter().acquire(
                token_id=token.id,
                user_id=token.user_id,
                limits=Limits(
                    token_concurrency=token.concurrency_limit,
                    token_rpm=token.rpm_limit,
                    account_concurrency=account.concurrency_limit,
                    account_rpm=account.rpm_limit,
                    account_tpm=account.tpm_limit,
                ),
                tokens=tokens,
            )
        except LimiterUnavailable as unavailable:
            # Limits are never skipped: without Redis nothing is admitted (README).
            logger.warning("The limiter's Redis did not answer (%s): answered 503", unavailable)
            raise busy_error() from None
        if admission.slot is None:
            raise rate_limit_error(admission, token, account=account, requested_tokens=tokens)
        return admission

    async def _media_call(
        self, scope: Scope, receive: Any, send: Any, endpoint: upstream.Endpoint, path: str
    ) -> None:
        """An image or audio call (`relay.media`): billed by its model's unit, never sent
        to a second channel once it may have reached one (relay/README.md)."""
        started = time.perf_counter()
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"")
        if not endpoint.is_multipart:
            _json_content_type(headers)
        else:
            # 415 or 400 before the body is read.
            media.multipart_boundary(content_type)
        token, address = await self._authenticate(scope, headers)
        named: list[str] = []
        with self._counting_refusals(token, address, named):
            form: media.MultipartForm | None = None
            if endpoint.is_multipart:
                raw_body = await read_body(receive, media.MAX_MULTIPART_BODY_BYTES)
                form = await asyncio.to_thread(media.multipart_parse, raw_body, content_type)
                del raw_body
                body: dict[str, Any] = dict(form.fields)
                model = media.form_model(form)
            else:
                body, model = request_body_parse(
                    await read_body(receive, MAX_BODY_BYTES), has_completion=False
                )
            price = await self._model_price(token, model)
            scope[FAMILY_KEY] = model_family(price.model_name)
            named.append(model)
            line = await self._usable_model(token, model, price, path=path)
            if path in media.IMAGE_PATHS:
                billing = media.images_billing(price, path=path, values=body)
            elif path == media.SPEECH_PATH:
                billing = media.speech_billing(price, body=body)
            else:
                assert form is not None
                billing = await asyncio.to_thread(
                    media.hearing_billing, price, path=path, form=form
                )
            routes = await self._routes(token, model, endpoint)
            # No tokens: the TPM limit does not count images or sound.
            admission = await self._admit(token, line, tokens=0)
            slot = admission.slot
            assert slot is not None  # `_admit` refused the request otherwise
        send = _with_headers(send, rate_headers(admission.state))
        call = Call(
            request_id=unique_id(),
            endpoint=endpoint,
            token=token,
            address=address,
            headers=headers,
            body=body,
            model=model,
            # Speech comes back as the upstream streams it.
            stream=endpoint.answers_binary,
            price=price,
            routes=routes,
            started=started,
            unit=billing.unit,
            unit_price=billing.unit_price,
            units=billing.units,
        )

        def build(upstream_model: str) -> tuple[bytes, str]:
            if form is None:
                payload = dict(body, model=upstream_model)
                return json.dumps(payload, separators=(",", ":")).encode(), "application/json"
            boundary = f"comet-{call.request_id}"
            data = media.multipart_build(form, model=upstream_model, boundary=boundary)
            return data, f"multipart/form-data; boundary={boundary}"

        try:
            meter = self.meter
            with self._counting_refusals(token, address, named):
                await self._hold(call, billing.hold_amount(price), meter)
            outcome: Outcome | None = None
            try:
                outcome = await forward_media(
                    call,
                    receive,
                    send,
                    client=self.upstream,
                    build=build,
                    channel_failed=self._channel_failed,
                    channel_recovered=self._channel_recovered,
                )
            finally:
                self._settle(
                    call, meter, outcome or Outcome(status_code=500, error_code="relay_error")
                )
        finally:
            await limiter().release(slot, tokens_used=0)

    async def _hold(self, call: Call, amount: int, meter: CreditMeter) -> None:
        """Hold `amount` for the call in the meter, or raise the refusal as a RelayError."""
        token_id, user_id, request_id = call.token.id, call.token.user_id, call.request_id
        try:
            if not meter.try_reserve(
                token_id=token_id, user_id=user_id, request_id=request_id, amount=amount
            ):
                # The grant is short (or the writer is behind): on a thread, which may wait.
                await run_in_database_thread(
                    functools.partial(
                        meter.reserve,
                        token_id=token_id,
                        user_id=user_id,
                        request_id=request_id,
                        amount=amount,
                    )
                )
        except UsageRefused as refused:
            status = REFUSAL_STATUS.get(refused.code, 402)
            raise RelayError(
                status, refused.template, code=refused.code, params=refused.params
            ) from None

    def _settle(self, call: Call, meter: CreditMeter, outcome: Outcome) -> None:
        try:
            cost, log = call_charge(call, outcome)
        except Exception:
            # Not expected (usage counts are bounded where they are read): give the hold
            # back rather than keep it until the process ends, and say so loudly.
            logger.exception("Request %s could not be priced: not charged", call.request_id)
            meter.release(request_id=call.request_id)
            return
        if not meter.settle(request_id=call.request_id, cost=cost, log=log):
            logger.error("Request %s held nothing when it settled: not charged", call.request_id)

    def _channel_failed(self, route: ChannelRoute, reason: str) -> None:
        upstream_error_observe(channel=route.name)

        async def record() -> None:
            if await run_in_database_thread(
                channel_record_failure, channel_id=route.channel_id, error=reason
            ):
                logger.warning(
                    "Channel %s disabled after repeated failures (%s)", route.name, reason
                )
                routing_table_expire()

        self._in_background(record())

    def _channel_recovered(self, route: ChannelRoute) -> None:
        self._in_background(
            run_in_database_thread(channel_record_success, channel_id=route.channel_id)
        )

    def _in_background(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


application = RelayApplication()
