"""Health probes of auto-disabled channels: one small request each, re-enabled on success.

Beat runs the probe every minute, so a channel that recovers is back in rotation
within two minutes (the help pages promise five). An admin's "Test this channel"
(`channel_test`) sends one real, small request through the relay's own client.
"""

import asyncio
import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from asgiref.sync import async_to_sync
from django.db import connection
from django.utils.translation import gettext as _

from core.db import connection_return
from models_catalog.models import CatalogModel

from .models import Channel
from .selectors import ChannelRoute, channel_route, channel_routes_auto_disabled
from .services import channel_reenable_after_probe
from .upstream import CHAT, EMBEDDINGS, MESSAGES, AttemptFailed, Endpoint, UpstreamClient

# The longest an admin waits for a test call's answer.
CHANNEL_TEST_TIMEOUT_SECONDS = 30
# What a test call asks: a one-token answer, the cheapest a model gives.
CHANNEL_TEST_PROMPT = "Say OK."
# An upstream's error message is shown up to this many characters.
CHANNEL_TEST_ERROR_CHARS = 200


def channel_probe(route: ChannelRoute) -> bool:
    """Return True when the channel answers a request for its model list (or is the mock)."""
    if route.kind == "mock":
        return True
    if route.api_key is None:
        return False
    if route.kind == "anthropic":
        headers = {"x-api-key": route.api_key, "anthropic-version": "2023-06-01"}
    else:
        headers = {"authorization": f"Bearer {route.api_key}"}
    timeout = httpx.Timeout(route.connect_timeout_seconds, read=10.0)
    try:
        response = httpx.get(
            f"{route.base_url}/models", headers=headers, timeout=timeout, trust_env=False
        )
    except httpx.HTTPError:
        return False
    # Any answer but an error of the server, its rate limit or a refused key means the
    # channel is back (some compatible servers have no /models and answer 404).
    return response.status_code < 500 and response.status_code not in (401, 403, 429)


def channels_probe_disabled() -> int:
    """Probe every auto-disabled channel; return how many were re-enabled."""
    return sum(
        1
        for route in channel_routes_auto_disabled()
        if channel_probe(route) and channel_reenable_after_probe(channel_id=route.channel_id)
    )


@dataclass(frozen=True)
class ChannelTestResult:
    """What a test call found: the model asked, how long the answer took, or why none came.

    Nothing of the answer is kept: not its text, not its tokens.
    """

    ok: bool
    model: str = ""
    upstream_model: str = ""
    latency_ms: int = 0
    error: str = ""


def _test_model(channel: Channel) -> tuple[str, str] | None:
    """Return the served model a test asks for and its catalog kind: a chat model first."""
    served = [str(name) for name in channel.served_models or []]
    if not served:
        return None
    kinds = dict(CatalogModel.objects.filter(name__in=served).values_list("name", "kind"))
    for wanted in (CatalogModel.Kind.CHAT, CatalogModel.Kind.EMBEDDING):
        for name in served:
            if kinds.get(name) == wanted:
                return name, wanted
    return served[0], CatalogModel.Kind.CHAT


def _test_request(route: ChannelRoute, model: str, kind: str) -> tuple[Endpoint, dict[str, Any]]:
    if kind == CatalogModel.Kind.EMBEDDING and route.kind != Channel.Kind.ANTHROPIC:
        return EMBEDDINGS, {"model": model, "input": CHANNEL_TEST_PROMPT}
    message = {"role": "user", "content": CHANNEL_TEST_PROMPT}
    endpoint = MESSAGES if route.kind == Channel.Kind.ANTHROPIC else CHAT
    return endpoint, {"model": model, "max_tokens": 1, "messages": [message]}


def _upstream_message(body: bytes) -> str:
    """Return the error message an upstream's JSON error body gives, shortened, or ""."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return ""
    message = error.get("message") if isinstance(error, dict) else error
    if not isinstance(message, str):
        return ""
    message = " ".join(message.split())
    if len(message) > CHANNEL_TEST_ERROR_CHARS:
        message = message[: CHANNEL_TEST_ERROR_CHARS - 1] + "…"
    return message


def _failure_text(failure: AttemptFailed) -> str:
    reason = failure.reason
    if failure.status_code in (401, 403) and reason.startswith("HTTP"):
        reason = _("%(reason)s, the upstream refused the API key") % {"reason": reason}
    elif failure.status_code == 429 and reason.startswith("HTTP"):
        reason = _("%(reason)s, rate limited by the upstream") % {"reason": reason}
    detail = _upstream_message(failure.body)
    return f"{reason}: {detail}" if detail else reason


async def _send_test(route: ChannelRoute, endpoint: Endpoint, body: dict[str, Any]) -> None:
    client = UpstreamClient()
    try:
        answer = await asyncio.wait_for(
            client.attempt(
                route, endpoint, body=body, model=body["model"], stream=False, client_headers={}
            ),
            timeout=CHANNEL_TEST_TIMEOUT_SECONDS,
        )
        await answer.aclose()
    finally:
        await client.aclose()


def channel_test(channel: Channel) -> ChannelTestResult:
    """Send one small request through a channel, whatever its status, and time the answer.

    It goes straight to the upstream with the relay's client (`relay.upstream`), past
    the relay's books: nobody is charged, nothing is logged, and the channel's failure
    counts are left as they are.
    """
    chosen = _test_model(channel)
    if chosen is None:
        return ChannelTestResult(ok=False, error=_("The channel serves no model to ask."))
    model, kind = chosen
    route = channel_route(channel)
    route = dataclasses.replace(
        route,
        read_timeout_seconds=min(route.read_timeout_seconds, CHANNEL_TEST_TIMEOUT_SECONDS),
    )
    endpoint, body = _test_request(route, model, kind)
    upstream_model = route.upstream_model(model)
    if not connection.in_atomic_block:
        # Up to CHANNEL_TEST_TIMEOUT_SECONDS of waiting on the upstream: the pooled
        # connection is not held for it.
        connection_return()
    started = time.monotonic()
    try:
        async_to_sync(_send_test)(route, endpoint, body)
    except AttemptFailed as failure:
        error = _failure_text(failure)
    except TimeoutError:
        error = _("no answer within %(seconds)s seconds") % {
            "seconds": CHANNEL_TEST_TIMEOUT_SECONDS
        }
    else:
        error = ""
    return ChannelTestResult(
        ok=not error,
        model=model,
        upstream_model=upstream_model,
        latency_ms=round((time.monotonic() - started) * 1000),
        error=error,
    )
