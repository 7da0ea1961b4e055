"""The relay: an ASGI application serving `/v1/*` without Django's request cycle.

Per request: authenticate the token → check expiry, IP and model allow-lists →
price the model → take a concurrency slot and count the request against the RPM
limit → reserve the most the request can cost → try channels in routing order →
pass the answer through → settle the actual cost with the log row → free the slot.

Request and response content is never stored or logged: only sizes, counts and
status codes leave this module.
"""

import asyncio
import contextlib
import functools
import json
import logging
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection

from accounts.tokens import TokenInfo, atoken_authenticate
from billing.grants import CreditMeter
from billing.metering import (
    ReservePool,
    Settlement,
    UsageRefused,
    areservation_renew,
    ausage_settle,
)
from comet.api import error_body
from comet.clientaddress import UNKNOWN_ADDRESS, address_clean
from comet.db import (
    BUSY_CODE,
    BUSY_MESSAGE,
    BUSY_RETRY_AFTER_SECONDS,
    database_busy,
    run_in_database_thread,
)
from comet.inputs import json_loads, storable_text_problem
from logs.data import RequestLogData
from models_catalog.pricing import billed_cached_ratio, request_cost
from models_catalog.selectors import ModelPrice, amodel_price, enabled_model_names

from . import translate, upstream
from .ids import unique_id
from .limits import LimitOutcome, limiter
from .memo import LocalMemo
from .refusals import RefusalCounter
from .routing import candidate_routes, routing_table, routing_table_expire
from .selectors import ChannelRoute
from .services import channel_record_failure, channel_record_success
from .settler import SettleBatcher
from .usage import (
    StreamUsageReader,
    Usage,
    estimate_answer_tokens,
    estimate_prompt_tokens,
    usage_from_anthropic,
    usage_from_openai,
)

logger = logging.getLogger("relay")

Scope = dict[str, Any]
Message = dict[str, Any]

CALLS = {
    "/v1/chat/completions": upstream.CHAT,
    "/v1/completions": upstream.COMPLETIONS,
    "/v1/embeddings": upstream.EMBEDDINGS,
    "/v1/messages": upstream.MESSAGES,
}
JSON_HEADERS = [(b"content-type", b"application/json")]
# Every estimate of a prompt from its body is capped here, so a huge body is
# refused by the upstream rather than reserving an absurd amount.
MAX_RESERVED_PROMPT_TOKENS = 1_000_000
# The most completion tokens a request may ask for: above every model's output limit,
# and low enough that its reservation stays a sane amount of money.
MAX_COMPLETION_TOKENS = 1_000_000
COMPLETION_LIMIT_KEYS = ("max_completion_tokens", "max_tokens")
# Each choice an upstream generates is billed: `n` answers, or `best_of` candidates
# (legacy completions) of which `n` are returned. Bounded like OpenAI's own limit.
CHOICE_KEYS = ("n", "best_of")
MAX_CHOICES = 128


# HTTP status of each reason the money core gives for refusing a reservation.
REFUSAL_STATUS = {
    "insufficient_quota": 402,
    # The token was disabled, deleted or expired between authentication and reservation.
    "invalid_api_key": 401,
    "duplicate_request": 409,
    # A payment dispute froze the account (billing.recharge).
    "account_frozen": 403,
    # The credit meter cannot write usage (database down or far behind): retry later.
    "billing_unavailable": 503,
}


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
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.code = code
        self.param = param
        # Seconds after which a retry may succeed (a `Retry-After` header).
        self.retry_after = retry_after


@dataclass
class Outcome:
    """What happened to a forwarded request: the facts its log row records."""

    status_code: int = 200
    usage: Usage = field(default_factory=Usage)
    route: ChannelRoute | None = None
    error_code: str = ""
    first_token_ms: int | None = None
    is_answered: bool = False


async def _read_body(receive: Any, limit: int) -> bytes:
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


async def _send_json(send: Any, status: int, body: bytes, extra: list | None = None) -> None:
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
    extra = None
    if error.retry_after is not None:
        extra = [(b"retry-after", str(error.retry_after).encode())]
    await _send_json(send, error.status_code, json.dumps(body).encode(), extra)


def _api_key(headers: dict[bytes, bytes]) -> str | None:
    authorization = headers.get(b"authorization")
    if authorization:
        scheme, _, value = authorization.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    api_key = headers.get(b"x-api-key")
    return api_key.decode("latin-1").strip() if api_key else None


def reservation_amount(
    *, body: dict[str, Any], body_size: int, price: ModelPrice, has_completion: bool
) -> int:
    """Return the most a request can cost: its whole body as prompt, plus its max_tokens
    for every choice it asks for (`n`, `best_of`)."""
    if price.price_per_call is not None or price.model_ratio is None:
        return request_cost(price)
    completion = 0
    if has_completion:
        completion = settings.RELAY_DEFAULT_MAX_TOKENS
        for key in COMPLETION_LIMIT_KEYS:
            value = body.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                completion = value
                break
        completion *= max(
            [1] + [body[key] for key in CHOICE_KEYS if isinstance(body.get(key), int)]
        )
    return request_cost(
        price,
        prompt_tokens=min(body_size, MAX_RESERVED_PROMPT_TOKENS),
        completion_tokens=completion,
    )


def request_body_parse(raw_body: bytes, *, has_completion: bool) -> tuple[dict[str, Any], str]:
    """Return the request's JSON object and its model name, or raise a 400 RelayError.

    Refused here, before anything is reserved: what is not JSON (invalid UTF-8,
    nesting deeper than `comet.inputs.MAX_JSON_DEPTH`), a body that is not an object,
    a model name no database can hold (NUL, a lone surrogate), a completion limit
    that is not a whole number from 1 to MAX_COMPLETION_TOKENS, and a number of
    choices (`n`, `best_of`) that is not one from 1 to MAX_CHOICES.
    """
    try:
        body = json_loads(raw_body)
    except ValueError:
        raise RelayError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise RelayError(400, "The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RelayError(
            400, "Name the model: 'model' is required.", code="missing_model", param="model"
        )
    problem = storable_text_problem(model)
    if problem is not None:
        # Not quoted back: the name is what cannot be shown.
        raise RelayError(400, f"The model name {problem}.", code="invalid_model", param="model")
    if has_completion:
        for key in COMPLETION_LIMIT_KEYS:
            value = body.get(key)
            if value is None:
                continue
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 1 <= value <= MAX_COMPLETION_TOKENS
            ):
                raise RelayError(
                    400,
                    f"'{key}' must be a whole number from 1 to {MAX_COMPLETION_TOKENS}.",
                    code="invalid_value",
                    param=key,
                )
        for key in CHOICE_KEYS:
            value = body.get(key)
            if value is None:
                continue
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 1 <= value <= MAX_CHOICES
            ):
                raise RelayError(
                    400,
                    f"'{key}' must be a whole number from 1 to {MAX_CHOICES}.",
                    code="invalid_value",
                    param=key,
                )
    return body, model


def actual_cost(*, usage: Usage, price: ModelPrice) -> int:
    """Return what an answered request costs."""
    return request_cost(
        price,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
    )


class RelayApplication:
    """The ASGI callable for `/v1/`."""

    def __init__(
        self, *, settle_in_background: bool = True, credit_grants: bool | None = None
    ) -> None:
        # Settling after the response is sent keeps the database write off the
        # client's latency; shutdown waits for every pending settlement. Those are
        # written in batches (relay.settler).
        self.settle_in_background = settle_in_background
        # With credit grants (billing.grants, PostgreSQL only) requests are reserved
        # and settled in this process's memory against money held in bulk, and
        # written in batches by the meter: the account row is not written per request.
        self.meter: CreditMeter | None = None
        if credit_grants is None:
            credit_grants = settings.RELAY_CREDIT_GRANTS
        if credit_grants and connection.vendor == "postgresql":
            self.meter = CreditMeter()
        # Reservations run on the event loop's own connections (no thread hop).
        self.reserver = ReservePool(settings.RELAY_RESERVE_CONNECTIONS)
        self.settler = SettleBatcher(
            batch_size=settings.RELAY_SETTLE_BATCH_SIZE,
            wait_seconds=settings.RELAY_SETTLE_BATCH_WAIT_MS / 1000,
        )
        self.upstream = upstream.UpstreamClient()
        self.tokens: LocalMemo[TokenInfo | None] = LocalMemo(settings.RELAY_LOCAL_CACHE_SECONDS)
        self.prices: LocalMemo[ModelPrice | None] = LocalMemo(settings.RELAY_LOCAL_CACHE_SECONDS)
        self.refusals = RefusalCounter()
        self._background: set[asyncio.Task[None]] = set()

    @property
    def pending_work(self) -> int:
        """Return how many settlements and failure counts are still running."""
        meter = self.meter.pending if self.meter is not None else 0
        return len(self._background) + self.settler.pending + meter

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        response_started = False

        async def tracked_send(message: Message) -> None:
            nonlocal response_started
            response_started = True
            await send(message)

        # Anthropic's SDK reads errors in its own shape.
        anthropic_format = CALLS.get(scope["path"].rstrip("/")) is upstream.MESSAGES
        try:
            await self._route(scope, receive, tracked_send)
        except RelayError as error:
            await send_error(send, error, anthropic_format=anthropic_format)
        except ConnectionResetError:
            return
        except Exception as error:
            if response_started:
                raise
            if database_busy(error):
                # Every connection of the pool was in use for DATABASE_POOL_TIMEOUT_SECONDS.
                logger.warning("No database connection free in time: answered 503")
                await send_error(
                    send,
                    RelayError(
                        503, BUSY_MESSAGE, code=BUSY_CODE, retry_after=BUSY_RETRY_AFTER_SECONDS
                    ),
                    anthropic_format=anthropic_format,
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
                RelayError(500, "The relay failed unexpectedly.", code="relay_error"),
                anthropic_format=anthropic_format,
            )

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Finish pending settlements and close this loop's connections."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.settler.aclose()
        await self.refusals.aclose()
        if self.meter is not None:
            # Write what was settled and give the grants back before the process ends.
            await run_in_database_thread(self.meter.close)
            # A closed meter takes nothing; a fresh one serves if the app starts again.
            self.meter = CreditMeter()
        await self.reserver.aclose()
        await self.upstream.aclose()
        await limiter().aclose()

    async def _route(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope["path"].rstrip("/") or "/"
        method = scope["method"]
        if path == "/v1/models":
            if method != "GET":
                raise RelayError(405, "Use GET for /v1/models.", code="method_not_allowed")
            await self._models(scope, send)
            return
        endpoint = CALLS.get(path)
        if endpoint is None:
            raise RelayError(404, f"Unknown API route: {method} {path}.", code="not_found")
        if method != "POST":
            raise RelayError(405, f"Use POST for {path}.", code="method_not_allowed")
        await self._call(scope, receive, send, endpoint)

    async def _authenticate(
        self, scope: Scope, headers: dict[bytes, bytes]
    ) -> tuple[TokenInfo, str]:
        raw_key = _api_key(headers)
        if raw_key is None:
            raise RelayError(
                401,
                "No API key: send it as 'Authorization: Bearer sk-...'.",
                code="invalid_api_key",
            )
        token = await self.tokens.get(raw_key, lambda: atoken_authenticate(raw_key))
        if token is None:
            raise RelayError(
                401, "Invalid API key, or the token is disabled or deleted.", code="invalid_api_key"
            )
        # Decided where the request entered, proxies believed or not (comet/clientaddress.py).
        address = scope["client"][0] if scope.get("client") else UNKNOWN_ADDRESS
        with self._counting_refusals(token, address):
            if not token.is_enabled:
                raise RelayError(
                    401,
                    "Invalid API key, or the token is disabled or deleted.",
                    code="invalid_api_key",
                )
            if token.is_expired:
                raise RelayError(401, "This token has expired.", code="invalid_api_key")
            if not token.allows_ip(address):
                raise RelayError(
                    403, f"This token may not be used from {address}.", code="ip_not_allowed"
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

    async def _models(self, scope: Scope, send: Any) -> None:
        headers = dict(scope["headers"])
        token, _address = await self._authenticate(scope, headers)
        names = await run_in_database_thread(enabled_model_names)
        if token.allowed_models:
            names = [name for name in names if name in token.allowed_models]
        body = {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "comet"}
                for name in sorted(names)
            ],
        }
        await _send_json(send, 200, json.dumps(body).encode())

    async def _call(
        self, scope: Scope, receive: Any, send: Any, endpoint: upstream.Endpoint
    ) -> None:
        started = time.perf_counter()
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            raise RelayError(
                415,
                "Send the request body as JSON (Content-Type: application/json).",
                code="unsupported_media_type",
            )
        token, address = await self._authenticate(scope, headers)
        # Refused from here on (never forwarded, nothing charged): counted for the logs.
        named: list[str] = []
        with self._counting_refusals(token, address, named):
            raw_body = await _read_body(receive, settings.RELAY_MAX_BODY_BYTES)
            body, model = request_body_parse(raw_body, has_completion=endpoint.has_completion)
            named.append(model)
            stream = endpoint.can_stream and body.get("stream") is True
            if not token.allows_model(model):
                raise RelayError(
                    403,
                    f"This token may not use the model '{model}'.",
                    code="model_not_allowed",
                    param="model",
                )
            price = await self.prices.get(
                (model, token.pricing_group_id),
                lambda: amodel_price(model_name=model, pricing_group_id=token.pricing_group_id),
            )
            if price is None:
                raise RelayError(
                    404,
                    f"The model '{model}' does not exist or is not available.",
                    code="model_not_found",
                    param="model",
                )
            routes = candidate_routes(
                await routing_table(),
                model_name=model,
                pricing_group_id=token.pricing_group_id,
                kinds=endpoint.kinds,
            )
            if not routes:
                raise RelayError(
                    503,
                    f"No channel is available for '{model}' right now; try again later.",
                    code="no_available_channel",
                )
            outcome_kind, slot = await limiter().acquire(
                token_id=token.id,
                concurrency_limit=token.concurrency_limit,
                rpm_limit=token.rpm_limit,
            )
            if slot is None:
                if outcome_kind is LimitOutcome.CONCURRENCY_EXCEEDED:
                    limit = f"in flight on this token (limit {token.concurrency_limit})"
                else:
                    limit = f"per minute on this token (limit {token.rpm_limit})"
                raise RelayError(429, f"Too many requests {limit}.", code="rate_limit_exceeded")
        request_id = unique_id()
        outcome: Outcome | None = None
        try:
            amount = reservation_amount(
                body=body,
                body_size=len(raw_body),
                price=price,
                has_completion=endpoint.has_completion,
            )
            with self._counting_refusals(token, address, named):
                try:
                    await self._reserve(token=token, request_id=request_id, amount=amount)
                except UsageRefused as refused:
                    status = REFUSAL_STATUS.get(refused.code, 402)
                    raise RelayError(status, refused.message, code=refused.code) from None
            try:
                outcome = await self._forward(
                    scope,
                    receive,
                    send,
                    endpoint=endpoint,
                    routes=routes,
                    body=body,
                    model=model,
                    stream=stream,
                    headers=headers,
                    started=started,
                    request_id=request_id,
                )
            finally:
                await limiter().release(slot)
                slot = None
                settlement = self._settlement(
                    request_id=request_id,
                    token=token,
                    model=model,
                    price=price,
                    outcome=outcome or Outcome(status_code=500, error_code="relay_error"),
                    address=address,
                    stream=stream,
                    started=started,
                )
                if self.meter is not None:
                    self.meter.settle(
                        request_id=request_id, cost=settlement.cost, log=settlement.log
                    )
                elif self.settle_in_background:
                    self.settler.submit(settlement)
                else:
                    await self._settle_now(settlement)
        finally:
            if slot is not None:
                await limiter().release(slot)

    async def _reserve(self, *, token: TokenInfo, request_id: str, amount: int) -> None:
        """Hold `amount` for the request, or raise UsageRefused."""
        token_id, user_id = token.id, token.user_id
        if self.meter is None:
            await self.reserver.reserve(
                token_id=token_id,
                user_id=user_id,
                request_id=request_id,
                amount=amount,
                lease_seconds=settings.COMET_RESERVATION_LEASE_SECONDS,
            )
        elif not self.meter.try_reserve(
            token_id=token_id, user_id=user_id, request_id=request_id, amount=amount
        ):
            # The grant is short (or the writer is behind): on a thread, which may wait.
            await run_in_database_thread(
                functools.partial(
                    self.meter.reserve,
                    token_id=token_id,
                    user_id=user_id,
                    request_id=request_id,
                    amount=amount,
                )
            )

    def _settlement(
        self,
        *,
        request_id: str,
        token: TokenInfo,
        model: str,
        price: ModelPrice,
        outcome: Outcome,
        address: str,
        stream: bool,
        started: float,
    ) -> Settlement:
        cost = 0
        if outcome.is_answered:
            cost = actual_cost(usage=outcome.usage, price=price)
        log = RequestLogData(
            model=model,
            # The entry step gives only valid addresses; a value inet refuses here
            # would lose the row and its charge, so it is checked once more.
            client_ip=address_clean(address) or UNKNOWN_ADDRESS,
            status_code=outcome.status_code,
            token_name=token.name,
            channel_id=outcome.route.channel_id if outcome.route else None,
            prompt_tokens=outcome.usage.prompt_tokens,
            completion_tokens=outcome.usage.completion_tokens,
            cached_tokens=outcome.usage.cached_tokens,
            model_ratio=price.model_ratio or Decimal(0),
            completion_ratio=price.completion_ratio,
            group_ratio=price.group_ratio,
            cached_ratio=billed_cached_ratio(price),
            price_per_call=price.price_per_call,
            error_code=outcome.error_code,
            latency_ms=int((time.perf_counter() - started) * 1000),
            first_token_ms=outcome.first_token_ms,
            is_stream=stream,
            usage_estimated=outcome.usage.is_estimated,
        )
        return Settlement(request_id=request_id, cost=cost, log=log)

    async def _settle_now(self, settlement: Settlement) -> None:
        try:
            await ausage_settle(
                request_id=settlement.request_id, cost=settlement.cost, log=settlement.log
            )
        except Exception:
            # The reservation's lease still bounds what this request holds.
            logger.exception("Settling request %s failed", settlement.request_id)

    async def _forward(
        self,
        scope: Scope,
        receive: Any,
        send: Any,
        *,
        endpoint: upstream.Endpoint,
        routes: list[ChannelRoute],
        body: dict[str, Any],
        model: str,
        stream: bool,
        headers: dict[bytes, bytes],
        started: float,
        request_id: str,
    ) -> Outcome:
        last_failure: upstream.AttemptFailed | None = None
        for route in routes[: settings.RELAY_MAX_ATTEMPTS]:
            try:
                answer = await self.upstream.attempt(
                    route, endpoint, body=body, model=model, stream=stream, client_headers=headers
                )
            except upstream.AttemptFailed as failure:
                last_failure = failure
                if failure.is_retryable:
                    self._record_failure(route, failure.reason)
                    continue
                error_body_bytes = failure.body
                if endpoint.anthropic_format and route.kind != "anthropic":
                    error_body_bytes = translate.openai_error_to_anthropic(
                        failure.status_code, failure.body
                    )
                await _send_json(
                    send,
                    failure.status_code,
                    error_body_bytes,
                    [(b"x-request-id", request_id.encode())],
                )
                return Outcome(
                    status_code=failure.status_code, route=route, error_code="upstream_refused"
                )
            if route.consecutive_failures:
                self._in_background(
                    run_in_database_thread(channel_record_success, channel_id=route.channel_id)
                )
            if answer.body is not None:
                return await self._send_answer(
                    send, answer, endpoint=endpoint, body=body, request_id=request_id
                )
            return await self._send_stream(
                receive,
                send,
                answer,
                endpoint=endpoint,
                body=body,
                started=started,
                request_id=request_id,
            )
        reason = last_failure.reason if last_failure else "no attempt"
        logger.warning(
            "Request %s: every channel failed for %s (last: %s)", request_id, model, reason
        )
        await send_error(
            send,
            RelayError(
                502,
                f"Every channel for '{model}' failed; try again shortly.",
                code="upstream_error",
            ),
            anthropic_format=endpoint.anthropic_format,
        )
        return Outcome(status_code=502, error_code="upstream_error")

    def _record_failure(self, route: ChannelRoute, reason: str) -> None:
        async def record() -> None:
            if await run_in_database_thread(
                channel_record_failure, channel_id=route.channel_id, error=reason
            ):
                logger.warning(
                    "Channel %s disabled after repeated failures (%s)", route.name, reason
                )
                routing_table_expire()

        self._in_background(record())

    def _in_background(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_answer(
        self,
        send: Any,
        answer: upstream.UpstreamAnswer,
        *,
        endpoint: upstream.Endpoint,
        body: dict[str, Any],
        request_id: str,
    ) -> Outcome:
        assert answer.body is not None
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
                prompt_tokens=estimate_prompt_tokens(body),
                completion_tokens=estimate_answer_tokens(payload) if endpoint.has_completion else 0,
                is_estimated=True,
            )
        headers = [
            (b"content-type", answer.content_type),
            (b"content-length", str(len(answer.body)).encode()),
            (b"x-request-id", request_id.encode()),
        ]
        await send(
            {"type": "http.response.start", "status": answer.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": answer.body})
        return Outcome(
            status_code=answer.status_code, usage=usage, route=answer.route, is_answered=True
        )

    async def _send_stream(
        self,
        receive: Any,
        send: Any,
        answer: upstream.UpstreamAnswer,
        *,
        endpoint: upstream.Endpoint,
        body: dict[str, Any],
        started: float,
        request_id: str,
    ) -> Outcome:
        reader = StreamUsageReader(
            anthropic=endpoint.anthropic_format and answer.translator is None
        )
        outcome = Outcome(status_code=200, route=answer.route, is_answered=True)
        outcome.first_token_ms = int((time.perf_counter() - started) * 1000)
        translator = answer.translator
        headers = [
            (b"content-type", b"text/event-stream" if translator else answer.content_type),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            (b"x-request-id", request_id.encode()),
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

        async def keep_hold() -> None:
            # A stream may outlast the reservation's lease: renew it three times per lease.
            if self.meter is not None:
                return  # a grant's meter renews its lease while a request holds part of it
            lease_seconds = settings.COMET_RESERVATION_LEASE_SECONDS
            while True:
                await asyncio.sleep(lease_seconds / 3)
                try:
                    await areservation_renew(request_id=request_id, lease_seconds=lease_seconds)
                except Exception as error:  # the next round tries again
                    logger.warning("Request %s: lease renewal failed (%s)", request_id, error)

        pumping = asyncio.ensure_future(pump())
        watching = asyncio.ensure_future(disconnected())
        renewing = asyncio.ensure_future(keep_hold())
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
            renewing.cancel()
            await asyncio.gather(pumping, watching, renewing, return_exceptions=True)
            await answer.aclose()
        outcome.usage = reader.result(body)
        return outcome


application = RelayApplication(settle_in_background=settings.RELAY_SETTLE_AFTER_RESPONSE)
