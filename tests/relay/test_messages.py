"""`POST /v1/messages` in Anthropic's format: to Anthropic channels, or translated."""

import json

import httpx
import pytest

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
