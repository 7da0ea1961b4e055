"""`POST /v1/messages` in Anthropic's format: to Anthropic channels, or translated."""

import json

import httpx
import pytest

from billing.models import Account, Reservation
from logs.models import RequestLog
from tests.factories import UserFactory
from tokens.services import token_create

from .conftest import MODEL, UPSTREAM_KEY, make_channel, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = {
    "model": MODEL,
    "max_tokens": 50,
    "system": "Be brief.",
    "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}],
}


def _events(raw: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_message_is_answered_in_anthropic_format(
    kind, relay_url, token_key, catalog_model, fake_upstream
):
    make_channel(kind, f"{fake_upstream.url}/v1", kind=kind)

    response = httpx.post(
        f"{relay_url}/messages",
        json=MESSAGE,
        # Anthropic's SDK sends the key as x-api-key.
        headers={"x-api-key": token_key, "anthropic-version": "2023-06-01"},
        timeout=10,
    )

    assert response.status_code == 200
    message = response.json()
    assert message["type"] == "message"
    assert message["content"][0]["text"].startswith("Hello from Comet")
    expected_auth = UPSTREAM_KEY if kind == "anthropic" else f"Bearer {UPSTREAM_KEY}"
    assert fake_upstream.app.stats.last_authorization == expected_auth
    [log] = wait_for_logs(1)
    assert (log.prompt_tokens, log.completion_tokens) == (
        message["usage"]["input_tokens"],
        message["usage"]["output_tokens"],
    )
    assert log.usage_estimated is False
    assert log.cost == (log.prompt_tokens + log.completion_tokens * 2) * 3


@pytest.mark.parametrize("kind", ["anthropic", "openai", "mock"])
def test_streamed_message_events_and_usage(
    kind, relay_url, token_key, catalog_model, fake_upstream
):
    base_url = "" if kind == "mock" else f"{fake_upstream.url}/v1"
    make_channel(kind, base_url, kind=kind)

    response = httpx.post(
        f"{relay_url}/messages",
        json={**MESSAGE, "stream": True},
        headers={"x-api-key": token_key},
        timeout=10,
    )

    events = _events(response.content)
    assert events[0]["type"] == "message_start"
    assert events[-1]["type"] == "message_stop"
    text = "".join(
        event["delta"]["text"] for event in events if event["type"] == "content_block_delta"
    )
    assert text.startswith("Hello from Comet")
    [delta] = [event for event in events if event["type"] == "message_delta"]
    [log] = wait_for_logs(1)
    assert log.is_stream is True
    assert log.usage_estimated is False
    assert log.completion_tokens == delta["usage"]["output_tokens"] > 0
    assert log.prompt_tokens > 0


def _anthropic_error(response: httpx.Response) -> dict:
    body = response.json()
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["message"]
    return body["error"]


def test_refusals_come_in_anthropic_error_shape(relay_url, token_key, catalog_model, funded_user):
    balance = Account.objects.get(pk=funded_user.pk).balance

    no_key = httpx.post(f"{relay_url}/messages", json=MESSAGE, timeout=10)
    bad_key = httpx.post(
        f"{relay_url}/messages", json=MESSAGE, headers={"x-api-key": "sk-nope"}, timeout=10
    )
    unknown_model = httpx.post(
        f"{relay_url}/messages",
        json={**MESSAGE, "model": "no-such-model"},
        headers={"x-api-key": token_key},
        timeout=10,
    )
    bad_json = httpx.post(
        f"{relay_url}/messages",
        content=b"{oops",
        headers={"x-api-key": token_key, "content-type": "application/json"},
        timeout=10,
    )

    assert (no_key.status_code, _anthropic_error(no_key)["type"]) == (401, "authentication_error")
    assert (bad_key.status_code, _anthropic_error(bad_key)["type"]) == (401, "authentication_error")
    assert (unknown_model.status_code, _anthropic_error(unknown_model)["type"]) == (
        404,
        "not_found_error",
    )
    assert (bad_json.status_code, _anthropic_error(bad_json)["type"]) == (
        400,
        "invalid_request_error",
    )
    account = Account.objects.get(pk=funded_user.pk)
    assert (account.balance, account.reserved) == (balance, 0)
    assert RequestLog.objects.count() == 0


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({**MESSAGE, "max_tokens": 10**30}).encode(),
        json.dumps({**MESSAGE, "max_tokens": "50"}).encode(),
        json.dumps({**MESSAGE, "model": "\x00"}).encode(),
        json.dumps({**MESSAGE, "model": "\ud800"}).encode(),
        b'{"model": ' + b"[" * 100_000,
    ],
    ids=["huge-max-tokens", "string-max-tokens", "nul-model", "surrogate-model", "deep"],
)
def test_bad_input_is_a_400_in_anthropic_shape_and_holds_nothing(
    content, relay_url, token_key, catalog_model, fake_upstream, funded_user
):
    make_channel("anthropic", f"{fake_upstream.url}/v1", kind="anthropic")
    balance = Account.objects.get(pk=funded_user.pk).balance

    response = httpx.post(
        f"{relay_url}/messages",
        content=content,
        headers={"x-api-key": token_key, "content-type": "application/json"},
        timeout=10,
    )

    assert (response.status_code, _anthropic_error(response)["type"]) == (
        400,
        "invalid_request_error",
    )
    assert fake_upstream.app.stats.requests == 0
    account = Account.objects.get(pk=funded_user.pk)
    assert (account.balance, account.reserved) == (balance, 0)
    assert not Reservation.objects.exists()
    assert RequestLog.objects.count() == 0


def test_insufficient_balance_is_a_billing_error(relay_url, catalog_model, fake_upstream):
    make_channel("openai", f"{fake_upstream.url}/v1")
    poor = UserFactory()
    _token, key = token_create(user=poor, name="empty")

    response = httpx.post(
        f"{relay_url}/messages", json=MESSAGE, headers={"x-api-key": key}, timeout=10
    )

    assert (response.status_code, _anthropic_error(response)["type"]) == (402, "billing_error")
    assert fake_upstream.app.stats.requests == 0


def test_an_openai_channels_refusal_is_translated(
    relay_url, token_key, catalog_model, fake_upstream
):
    make_channel("openai", f"{fake_upstream.url}/status-400/v1")

    response = httpx.post(
        f"{relay_url}/messages", json=MESSAGE, headers={"x-api-key": token_key}, timeout=10
    )

    assert response.status_code == 400
    assert _anthropic_error(response) == {"type": "invalid_request_error", "message": "fake 400"}


def test_every_channel_failing_is_an_api_error(relay_url, token_key, catalog_model, fake_upstream):
    make_channel("anthropic", f"{fake_upstream.url}/status-500/v1", kind="anthropic")

    response = httpx.post(
        f"{relay_url}/messages", json=MESSAGE, headers={"x-api-key": token_key}, timeout=10
    )

    assert (response.status_code, _anthropic_error(response)["type"]) == (502, "api_error")


def test_chat_completions_keep_openai_error_shape(relay_url, catalog_model):
    response = httpx.post(
        f"{relay_url}/chat/completions",
        json={"model": MODEL, "messages": []},
        headers={"authorization": "Bearer sk-nope"},
        timeout=10,
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    "odd",
    [
        {"system": 1},
        {"system": True},
        {"system": [{"type": "text", "text": 5}]},
        {"messages": 5},
        {"messages": [{"role": "user", "content": [{"type": "image", "source": "x"}]}]},
    ],
    ids=["number-system", "true-system", "number-text", "number-messages", "string-source"],
)
def test_odd_types_are_left_out_of_the_translation_not_a_500(
    odd, relay_url, token_key, catalog_model, fake_upstream
):
    # Found by tests/relay/test_fuzz.py: each of these was a TypeError or
    # AttributeError in relay.translate, answered 500.
    make_channel("openai", f"{fake_upstream.url}/v1")

    response = httpx.post(
        f"{relay_url}/messages",
        json={**MESSAGE, **odd},
        headers={"x-api-key": token_key},
        timeout=10,
    )

    assert response.status_code == 200
    assert response.json()["type"] == "message"
    [log] = wait_for_logs(1)
    assert (log.status_code, log.error_code) == (200, "")


@pytest.mark.parametrize("stream", [1, "yes", {"on": True}], ids=["one", "string", "object"])
def test_a_stream_flag_that_is_not_true_gets_one_message_and_fails_no_channel(
    stream, relay_url, token_key, catalog_model, fake_upstream
):
    # Found by tests/relay/test_fuzz.py: the translation asked the OpenAI channel for a
    # stream while the relay read the answer as one body ("unreadable answer"): a 502,
    # counted as the channel's failure, so five such requests disabled it for everyone.
    channel = make_channel("openai", f"{fake_upstream.url}/v1")

    response = httpx.post(
        f"{relay_url}/messages",
        json={**MESSAGE, "stream": stream},
        headers={"x-api-key": token_key},
        timeout=10,
    )

    assert response.status_code == 200
    assert response.json()["type"] == "message"
    channel.refresh_from_db()
    assert channel.consecutive_failures == 0
    [log] = wait_for_logs(1)
    assert (log.status_code, log.is_stream) == (200, False)
