"""Health probes of auto-disabled channels, and the admin's test call: one real, small request.

Both send what a customer's request would be at its smallest — a chat completion of
one token (a message for an Anthropic channel, an embedding for a channel that serves
only embedding models) — through the relay's own client (`relay.upstream`), so the
channel's model mapping, overrides and keys are those of real traffic: a channel whose
completions fail does not come back because its model list answers. Each of the
channel's keys is tried in turn until one answers (a refused key is skipped, as the
relay does). Nothing goes through the relay's books: nobody is charged, nothing is
logged, and the channel's failure counts are left as they are.

Beat runs the probe every minute, so a channel that recovers is back in rotation
within two minutes (the help pages promise five); a success re-enables the channel
with an audit row, a failure leaves it as it is. The disabled channels are probed
together, each for at most `PROBE_TIMEOUT_SECONDS`.
"""

import asyncio
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connection
from django.utils.translation import gettext as _

from core.db import connection_return
from models_catalog.models import CatalogModel

from .keys import MAX_KEYS_PER_ATTEMPT, set_aside_seconds
from .models import Channel
from .selectors import ChannelRoute, channel_route, channels_auto_disabled
from .services import channel_reenable_after_probe
from .upstream import CHAT, EMBEDDINGS, MESSAGES, AttemptFailed, Endpoint, UpstreamClient

logger = logging.getLogger(__name__)

# The longest an admin waits for a test call's answer.
CHANNEL_TEST_TIMEOUT_SECONDS = 30
# The longest a probe waits for a disabled channel's answer (beat runs it every minute).
PROBE_TIMEOUT_SECONDS = 20
# What a test call asks: a one-token answer, the cheapest a model gives.
CHANNEL_TEST_PROMPT = "Say OK."
# An upstream's error message is shown up to this many characters.
CHANNEL_TEST_ERROR_CHARS = 200


@dataclass(frozen=True)
class TestCall:
    """The request a test or a probe sends through one channel."""

    route: ChannelRoute
    endpoint: Endpoint
    body: dict[str, Any]

    @property
    def model(self) -> str:
        return str(self.body["model"])


def _test_call(channel: Channel, *, timeout_seconds: float) -> TestCall | None:
    """Return the smallest real request for the channel, or None when it serves no model."""
    chosen = _test_model(channel)
    if chosen is None:
        return None
    model, kind = chosen
    route = channel_route(channel)
    route = dataclasses.replace(
        route, read_timeout_seconds=min(route.read_timeout_seconds, timeout_seconds)
    )
    endpoint, body = _test_request(route, model, kind)
    return TestCall(route, endpoint, body)


async def _probe(client: UpstreamClient, test: TestCall) -> bool:
    try:
        await _send_test(client, test, timeout_seconds=PROBE_TIMEOUT_SECONDS)
    except AttemptFailed as failure:
        logger.info("Probe of channel %s: %s", test.route.name, failure.reason)
        return False
    except TimeoutError:
        logger.info("Probe of channel %s: no answer", test.route.name)
        return False
    return True


async def _probe_all(tests: list[TestCall]) -> list[bool]:
    client = UpstreamClient()
    try:
        return list(await asyncio.gather(*(_probe(client, test) for test in tests)))
    finally:
        await client.aclose()


def channels_probe_disabled() -> int:
    """Probe every auto-disabled channel with a minimal completion; return how many came back.

    A channel that serves no model has nothing to ask and stays disabled.
    """
    tests = [
        test
        for channel in channels_auto_disabled()
        if (test := _test_call(channel, timeout_seconds=PROBE_TIMEOUT_SECONDS)) is not None
    ]
    if not tests:
        return 0
    if not connection.in_atomic_block:
        # Up to PROBE_TIMEOUT_SECONDS of waiting on upstreams: the pooled connection
        # is not held for it.
        connection_return()
    answered = async_to_sync(_probe_all)(tests)
    return sum(
        1
        for test, ok in zip(tests, answered, strict=True)
        if ok and channel_reenable_after_probe(channel_id=test.route.channel_id)
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
    # "…abcd (HTTP 401)" for each key the upstream refused before one answered.
    refused_keys: tuple[str, ...] = ()


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
    if kind == CatalogModel.Kind.EMBEDDING and route.kind not in (
        Channel.Kind.ANTHROPIC,
        Channel.Kind.GEMINI,
    ):
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
    if failure.status_code in (401, 403) and failure.is_retryable and reason.startswith("HTTP"):
        reason = _("%(reason)s, the upstream refused the API key") % {"reason": reason}
    elif failure.status_code == 429 and reason.startswith("HTTP"):
        reason = _("%(reason)s, rate limited by the upstream") % {"reason": reason}
    detail = _upstream_message(failure.body)
    return f"{reason}: {detail}" if detail else reason


async def _send_test(
    client: UpstreamClient,
    test: TestCall,
    *,
    timeout_seconds: float,
    refused_keys: list[str] | None = None,
) -> None:
    """Send the test call with the channel's keys in turn until one is answered.

    Raise the AttemptFailed of the last key tried (a refused key is noted in
    `refused_keys` and the next one tried), or TimeoutError.
    """
    route = test.route
    keys: tuple[str | None, ...] = route.api_keys[:MAX_KEYS_PER_ATTEMPT] or (None,)
    for number, key in enumerate(keys, start=1):
        keyed = route if key is None or key == route.api_key else route.with_key(key)
        try:
            answer = await asyncio.wait_for(
                client.attempt(
                    keyed,
                    test.endpoint,
                    body=test.body,
                    model=test.model,
                    stream=False,
                    client_headers={},
                ),
                timeout=timeout_seconds,
            )
        except AttemptFailed as failure:
            is_key_refused = failure.is_retryable and (
                set_aside_seconds(
                    failure.status_code,
                    retry_after=failure.retry_after,
                    is_quota_exhausted=failure.is_quota_exhausted,
                )
                is not None
            )
            if key is None or not is_key_refused or number == len(keys):
                raise
            if refused_keys is not None:
                refused_keys.append(f"…{key[-4:]} ({failure.reason})")
            continue
        await answer.aclose()
        return


async def _run_test(test: TestCall, refused_keys: list[str]) -> None:
    client = UpstreamClient()
    try:
        await _send_test(
            client, test, timeout_seconds=CHANNEL_TEST_TIMEOUT_SECONDS, refused_keys=refused_keys
        )
    finally:
        await client.aclose()


def channel_test(channel: Channel) -> ChannelTestResult:
    """Send one small request through a channel, whatever its status, and time the answer.

    It goes straight to the upstream with the relay's client (`relay.upstream`), past
    the relay's books: nobody is charged, nothing is logged, and the channel's failure
    counts are left as they are.
    """
    test = _test_call(channel, timeout_seconds=CHANNEL_TEST_TIMEOUT_SECONDS)
    if test is None:
        return ChannelTestResult(ok=False, error=_("The channel serves no model to ask."))
    upstream_model = test.route.upstream_model(test.model)
    if not connection.in_atomic_block:
        # Up to CHANNEL_TEST_TIMEOUT_SECONDS of waiting on the upstream: the pooled
        # connection is not held for it.
        connection_return()
    refused_keys: list[str] = []
    started = time.monotonic()
    try:
        async_to_sync(_run_test)(test, refused_keys)
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
        model=test.model,
        upstream_model=upstream_model,
        latency_ms=round((time.monotonic() - started) * 1000),
        error=error,
        refused_keys=tuple(refused_keys),
    )
