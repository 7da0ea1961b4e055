"""The official `openai` SDK against the relay, with only base_url and api_key changed."""

import asyncio

import openai
import pytest

from billing.models import Account
from logs.models import RequestLog

from .conftest import MODEL, UPSTREAM_KEY, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)


def _client(relay_url, key):
    return openai.OpenAI(base_url=relay_url, api_key=key, max_retries=0)


def test_chat_completion_is_answered_billed_and_logged(
    relay_url, token_key, openai_channel, fake_upstream, funded_user, return_grants
):
    # Given a funded token and an OpenAI-compatible channel
    balance_before = Account.objects.get(pk=funded_user.pk).balance

    # When the SDK asks for a chat completion
    answer = _client(relay_url, token_key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello"}], max_tokens=50
    )

    # Then the upstream's answer comes back and its usage is charged exactly once
    assert answer.choices[0].message.content.startswith("Hello from Comet")
    assert fake_upstream.app.stats.last_authorization == f"Bearer {UPSTREAM_KEY}"
    [log] = wait_for_logs(1)
    assert (log.prompt_tokens, log.completion_tokens) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    # Model ratio 1.5 at 2 micro-USD a token, completion ratio 2.
    expected = (log.prompt_tokens + log.completion_tokens * 2) * 3
    assert log.cost == expected
    assert log.status_code == 200
    assert log.is_stream is False
    assert log.usage_estimated is False
    assert log.channel_id == openai_channel.pk
    return_grants()
    account = Account.objects.get(pk=funded_user.pk)
    assert account.balance == balance_before - expected
    assert account.reserved == 0


def test_streaming_chat_passes_chunks_and_bills_upstream_usage(
    relay_url, token_key, openai_channel, fake_upstream
):
    stream = _client(relay_url, token_key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert text.startswith("Hello from Comet")
    assert fake_upstream.app.stats.last_include_usage is True
    [log] = wait_for_logs(1)
    assert log.is_stream is True
    assert log.usage_estimated is False
    assert log.completion_tokens == len(text.split(" "))
    assert log.first_token_ms is not None
    assert log.first_token_ms <= log.latency_ms


def test_completions_and_embeddings(relay_url, token_key, openai_channel):
    client = _client(relay_url, token_key)

    completion = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=5)
    embedding = client.embeddings.create(model=MODEL, input=["one", "two"])

    assert completion.choices[0].text
    assert completion.usage.completion_tokens == 5
    assert len(embedding.data) == 2
    assert len(embedding.data[0].embedding) == 16
    assert len(wait_for_logs(2)) == 2
    assert RequestLog.objects.filter(completion_tokens=0).count() == 1  # the embeddings


def test_streaming_completions(relay_url, token_key, openai_channel):
    stream = _client(relay_url, token_key).completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=4, stream=True
    )
    text = "".join(chunk.choices[0].text for chunk in stream if chunk.choices)

    assert text == "Hello from Comet's mock "
    [log] = wait_for_logs(1)
    assert (log.completion_tokens, log.is_stream, log.usage_estimated) == (4, True, False)


def test_models_lists_what_the_token_may_use(relay_url, token_key, openai_channel):
    models = _client(relay_url, token_key).models.list()

    assert [model.id for model in models] == [MODEL]


def test_async_client_streams(relay_url, token_key, openai_channel):
    async def ask():
        client = openai.AsyncOpenAI(base_url=relay_url, api_key=token_key, max_retries=0)
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
        await client.close()
        return "".join(parts)

    assert asyncio.run(ask()).startswith("Hello from Comet")


def test_bad_key_is_an_authentication_error(relay_url, openai_channel, fake_upstream):
    with pytest.raises(openai.AuthenticationError) as raised:
        _client(relay_url, "sk-not-a-real-key").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )

    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
    assert fake_upstream.app.stats.requests == 0


def test_unknown_model_is_not_found(relay_url, token_key, openai_channel, fake_upstream):
    with pytest.raises(openai.NotFoundError) as raised:
        _client(relay_url, token_key).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )

    assert raised.value.code == "model_not_found"
    assert fake_upstream.app.stats.requests == 0
    assert RequestLog.objects.count() == 0


def test_empty_balance_is_insufficient_quota(
    relay_url, catalog_model, openai_channel, fake_upstream
):
    from tests.factories import UserFactory
    from tokens.services import token_create

    _token, key = token_create(user=UserFactory(), name="broke")

    with pytest.raises(openai.APIStatusError) as raised:
        _client(relay_url, key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )

    assert raised.value.status_code == 402
    assert raised.value.code == "insufficient_quota"
    assert fake_upstream.app.stats.requests == 0
    assert RequestLog.objects.count() == 0


def test_rpm_limit_is_a_rate_limit_error(
    relay_url, funded_user, catalog_model, openai_channel, fake_upstream
):
    from tokens.services import token_create

    _token, key = token_create(user=funded_user, name="slow", rpm_limit=2)
    client = _client(relay_url, key)
    for _ in range(2):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])

    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])

    assert raised.value.code == "rate_limit_exceeded"
    assert fake_upstream.app.stats.requests == 2
    assert len(wait_for_logs(3, timeout=0.5)) == 2
