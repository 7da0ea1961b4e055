"""`/v1/chat/completions` served by an Anthropic channel: the official openai SDK against the
relay, whose upstream is a fake speaking Anthropic's real wire format (`fake_anthropic`)."""

import json
import math
from decimal import Decimal

import httpx
import openai
import pytest
from anthropic.types import ServerToolUseBlock

from billing.models import Account
from models_catalog.models import CatalogModel, Vendor
from models_catalog.services import catalog_entry_create
from relay.usage import StreamUsageReader, usage_from_anthropic
from tests.fake_upstream import ServerThread

from .conftest import UPSTREAM_KEY, make_channel, wait_for_logs
from .fake_anthropic import FakeAnthropic, error_response, text_message

pytestmark = pytest.mark.django_db(transaction=True)

CLAUDE = "claude-test"
UPSTREAM_MODEL = "claude-upstream-20250101"
MODEL_RATIO = Decimal("1.5")
COMPLETION_RATIO = Decimal("5")
CACHED_RATIO = Decimal("0.1")
COMPLETION_RESERVE = 321
# A model ratio of 1 is $2 per million tokens: 2 micro-USD a token (the catalog's scale).
MICRO_USD_PER_TOKEN = 2
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
    "AAAABJRU5ErkJggg=="
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def expected_cost(*, input_tokens: int, output: int, cache_read: int = 0, cache_write: int = 0):
    """What the catalog's prices make of Anthropic's usage: input and cache writes at the
    input price, cache reads at the cached ratio, output at the completion ratio."""
    tokens = input_tokens + cache_write + cache_read * CACHED_RATIO + output * COMPLETION_RATIO
    return math.ceil(tokens * MODEL_RATIO * MICRO_USD_PER_TOKEN)


@pytest.fixture(scope="session")
def anthropic_server():
    app = FakeAnthropic()
    server = ServerThread(app).start()
    server.app = app
    yield server
    server.stop()


@pytest.fixture
def fake(anthropic_server):
    anthropic_server.app.reset()
    return anthropic_server


@pytest.fixture
def claude_model(catalog_model):
    vendor, _created = Vendor.objects.get_or_create(name="anthropic", display_name="Anthropic")
    model = CatalogModel(
        name=CLAUDE,
        vendor=vendor,
        model_ratio=MODEL_RATIO,
        completion_ratio=COMPLETION_RATIO,
        cached_ratio=CACHED_RATIO,
        completion_reserve=COMPLETION_RESERVE,
    )
    catalog_entry_create(entry=model)
    return model


@pytest.fixture
def claude_channel(fake, claude_model):
    return make_channel(
        "claude",
        f"{fake.url}/v1",
        kind="anthropic",
        served_models=[CLAUDE],
        model_mapping={CLAUDE: UPSTREAM_MODEL},
    )


@pytest.fixture
def client(relay_url, token_key, claude_channel):
    return openai.OpenAI(base_url=relay_url, api_key=token_key, max_retries=0)


def balance_of(user) -> int:
    return Account.objects.get(pk=user.pk).balance


def test_text_system_and_image_are_sent_as_anthropic_takes_them(client, fake):
    answer = client.chat.completions.create(
        model=CLAUDE,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Speak French."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            },
            {"role": "assistant", "content": "A pixel and a cat."},
            {"role": "user", "content": "Sure?"},
            {"role": "user", "content": "Answer."},
        ],
        temperature=0.5,
        top_p=0.9,
        stop="END",
        user="customer-7",
    )

    [sent] = fake.app.requests
    assert fake.app.refused == []
    assert fake.app.headers[0]["x-api-key"] == UPSTREAM_KEY
    assert fake.app.headers[0]["anthropic-version"] == "2023-06-01"
    assert sent["model"] == UPSTREAM_MODEL
    assert sent["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Speak French."},
    ]
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "A pixel and a cat."}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Sure?"}, {"type": "text", "text": "Answer."}],
        },
    ]
    assert (sent["temperature"], sent["top_p"], sent["stop_sequences"]) == (0.5, 0.9, ["END"])
    assert sent["metadata"] == {"user_id": "customer-7"}
    # No limit asked: the one the hold assumed (the model's completion reserve).
    assert sent["max_tokens"] == COMPLETION_RESERVE
    assert "stream" not in sent
    assert answer.object == "chat.completion"
    assert answer.model == CLAUDE
    assert answer.choices[0].message.content == "Hello from Claude"
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (11, 7)


def test_tools_and_tool_results_go_both_ways(client, fake):
    fake.app.answer = text_message(
        "Let me look.",
        stop_reason="tool_use",
        tool_calls=(("toolu_2", "get_weather", {"city": "Lyon"}),),
    )

    answer = client.chat.completions.create(
        model=CLAUDE,
        max_completion_tokens=99,
        tools=[WEATHER_TOOL, {"type": "function", "function": {"name": "now"}}],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "Sunny"},
            {
                "role": "tool",
                "tool_call_id": "call_b",
                "content": [{"type": "text", "text": "Rain"}],
            },
            {"role": "user", "content": "And Lyon?"},
        ],
    )

    [sent] = fake.app.requests
    assert fake.app.refused == []
    assert sent["max_tokens"] == 99
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert sent["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
        "disable_parallel_tool_use": True,
    }
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_a",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_b",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_a", "content": "Sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_b",
                    "content": [{"type": "text", "text": "Rain"}],
                },
                {"type": "text", "text": "And Lyon?"},
            ],
        },
    ]
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me look."
    [call] = choice.message.tool_calls
    assert (call.id, call.function.name) == ("toolu_2", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Lyon"}


@pytest.mark.parametrize(
    ("choice", "sent"),
    [("auto", {"type": "auto"}), ("none", {"type": "none"}), ("required", {"type": "any"})],
)
def test_tool_choices_translate(client, fake, choice, sent):
    client.chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "user", "content": "Hi"}],
        tools=[WEATHER_TOOL],
        tool_choice=choice,
    )

    assert fake.app.requests[0]["tool_choice"] == sent


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons_become_finish_reasons(client, fake, stop_reason, finish_reason):
    fake.app.answer = text_message(stop_reason=stop_reason)

    answer = client.chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": "Hi"}]
    )

    assert answer.choices[0].finish_reason == finish_reason


def test_cache_reads_and_writes_are_billed_to_the_micro_usd(client, fake, funded_user):
    fake.app.answer = text_message(
        input_tokens=1000, output_tokens=300, cache_read=5000, cache_creation=2000
    )
    before = balance_of(funded_user)

    answer = client.chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": "Hi"}]
    )

    assert answer.usage.prompt_tokens == 1000 + 5000 + 2000
    assert answer.usage.prompt_tokens_details.cached_tokens == 5000
    assert answer.usage.completion_tokens == 300
    [log] = wait_for_logs(1)
    cost = expected_cost(input_tokens=1000, output=300, cache_read=5000, cache_write=2000)
    assert (log.prompt_tokens, log.cached_tokens, log.completion_tokens) == (8000, 5000, 300)
    assert log.usage_estimated is False
    assert log.cost == cost
    assert balance_of(funded_user) == before - cost


def test_a_stream_comes_back_as_chat_chunks_with_usage(client, fake, funded_user):
    fake.app.answer = text_message(
        "Hello there",
        stop_reason="tool_use",
        tool_calls=(("toolu_9", "get_weather", {"city": "Oslo"}),),
        input_tokens=40,
        output_tokens=12,
        cache_read=100,
        cache_creation=60,
    )
    before = balance_of(funded_user)

    stream = client.chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "user", "content": "Hi"}],
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert fake.app.requests[0]["stream"] is True
    assert fake.app.refused == []
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "Hello there"
    calls = [
        call
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
    ]
    assert (calls[0].id, calls[0].function.name, calls[0].index) == ("toolu_9", "get_weather", 0)
    arguments = "".join(call.function.arguments or "" for call in calls)
    assert json.loads(arguments) == {"city": "Oslo"}
    finish = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finish[-1] == "tool_calls"
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert (usage.prompt_tokens, usage.completion_tokens) == (200, 12)
    assert usage.prompt_tokens_details.cached_tokens == 100
    [log] = wait_for_logs(1)
    cost = expected_cost(input_tokens=40, output=12, cache_read=100, cache_write=60)
    assert (log.is_stream, log.usage_estimated, log.error_code) == (True, False, "")
    assert log.cost == cost
    assert balance_of(funded_user) == before - cost


def test_a_stream_without_include_usage_ends_with_done_and_is_still_billed(
    relay_url, token_key, claude_channel, fake
):
    response = httpx.post(
        f"{relay_url}/chat/completions",
        json={"model": CLAUDE, "messages": [{"role": "user", "content": "Hi"}], "stream": True},
        headers={"authorization": f"Bearer {token_key}"},
        timeout=10,
    )

    lines = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(chunk["choices"] for chunk in chunks)  # the usage chunk was not asked for
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    [log] = wait_for_logs(1)
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)
    assert log.cost == expected_cost(input_tokens=11, output=7)


def test_an_error_event_mid_stream_ends_it_marked_interrupted(client, fake):
    fake.app.events_before_error = 4  # message_start, ping, block start, a text delta
    fake.app.answer = text_message(input_tokens=511, cache_read=40)

    stream = client.chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    received = []

    def read_all() -> None:
        received.extend(stream)

    with pytest.raises(openai.APIError, match="Overloaded"):
        read_all()

    assert "".join(chunk.choices[0].delta.content or "" for chunk in received) == "Hello fr"
    [log] = wait_for_logs(1)
    assert log.error_code == "upstream_stream_interrupted"
    # Billed by what message_start said (the prompt, one output token), not an estimate.
    assert not log.usage_estimated
    assert (log.prompt_tokens, log.cached_tokens, log.completion_tokens) == (551, 40, 1)
    assert log.cost == expected_cost(input_tokens=511, output=1, cache_read=40)


def test_anthropic_refusals_come_back_in_openai_shape(client, fake, funded_user):
    fake.app.failure = (400, error_response("invalid_request_error", "prompt is too long"))
    before = balance_of(funded_user)

    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "Hi"}])

    assert raised.value.status_code == 400
    assert raised.value.body == {
        "message": "prompt is too long",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert balance_of(funded_user) == before


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"n": 2}, "'n'"),
        ({"logprobs": True}, "'logprobs'"),
        ({"logit_bias": {"50256": -100}}, "'logit_bias'"),
        ({"seed": 7}, "'seed'"),
        ({"temperature": 1.5}, "'temperature'"),
        ({"reasoning_effort": "high"}, "'reasoning_effort'"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "'audio'"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {}},
                }
            },
            "'response_format'",
        ),
        ({"frequency_penalty": 0.5}, "'frequency_penalty'"),
        ({"some_new_field": 1}, "'some_new_field'"),
        (
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "[1, 2]"},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "c", "content": "x"},
                ]
            },
            "'messages.1.tool_calls.0.function.arguments'",
        ),
        (
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "x"}]},
            "'messages.1 (system after the conversation began)'",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}
                        ],
                    }
                ]
            },
            "'messages.0.content.0 (input_audio)'",
        ),
    ],
)
def test_what_cannot_be_translated_is_a_400_naming_it_and_costs_nothing(
    relay_url, token_key, claude_channel, fake, funded_user, return_grants, extra, named
):
    before = Account.objects.get(pk=funded_user.pk)
    body = {"model": CLAUDE, "messages": [{"role": "user", "content": "Hi"}], **extra}

    response = httpx.post(
        f"{relay_url}/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {token_key}"},
        timeout=10,
    )

    assert response.status_code == 400
    assert named in response.json()["error"]["message"]
    assert fake.app.requests == []
    [log] = wait_for_logs(1)
    assert log.cost == 0
    return_grants()
    after = Account.objects.get(pk=funded_user.pk)
    assert (after.balance, after.reserved) == (before.balance, before.reserved)


def test_the_probe_of_an_anthropic_channel_sends_a_real_message(fake, claude_channel):
    from relay.probe import channel_test

    result = channel_test(claude_channel)

    assert result.ok, result.error
    [sent] = fake.app.requests
    assert fake.app.refused == []
    assert sent["max_tokens"] == 1


def test_anthropic_usage_counts_cache_writes_as_prompt_tokens():
    """Cache writes are input the vendor bills (at more than the input price); they were
    once left out of the prompt, and so unbilled."""
    usage = usage_from_anthropic(
        {
            "usage": {
                "input_tokens": 10,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 1000,
                "output_tokens": 5,
            }
        }
    )
    assert usage is not None
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (1110, 100, 5)

    reader = StreamUsageReader(anthropic=True)
    start = {
        "type": "message_start",
        "message": {
            "usage": {"input_tokens": 3, "cache_creation_input_tokens": 40, "output_tokens": 1}
        },
    }
    delta = {
        "type": "message_delta",
        "usage": {
            "input_tokens": 3,
            "cache_read_input_tokens": 20,
            "cache_creation_input_tokens": 40,
            "output_tokens": 9,
        },
    }
    reader.feed(f"data: {json.dumps(start)}\n\ndata: {json.dumps(delta)}\n\n".encode())
    result = reader.result(prompt_tokens=0)
    assert (result.prompt_tokens, result.cached_tokens, result.completion_tokens) == (63, 20, 9)


def test_anthropic_cache_writes_are_charged_on_v1_messages(
    relay_url, token_key, claude_channel, fake, funded_user
):
    fake.app.answer = text_message(input_tokens=10, output_tokens=4, cache_creation=500)
    before = balance_of(funded_user)

    response = httpx.post(
        f"{relay_url}/messages",
        json={"model": CLAUDE, "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]},
        headers={"x-api-key": token_key},
        timeout=10,
    )

    assert response.status_code == 200
    [log] = wait_for_logs(1)
    cost = expected_cost(input_tokens=10, output=4, cache_write=500)
    assert (log.prompt_tokens, log.cached_tokens) == (510, 0)
    assert log.cost == cost
    assert balance_of(funded_user) == before - cost


def test_an_answer_block_a_chat_completion_cannot_carry_is_a_502_and_costs_nothing(
    client, fake, funded_user
):
    block = ServerToolUseBlock(
        type="server_tool_use", id="srvtoolu_1", name="web_search", input={"query": "x"}
    )
    message = text_message()
    fake.app.answer = message.model_copy(update={"content": [*message.content, block]})
    before = balance_of(funded_user)

    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "Hi"}])

    assert raised.value.status_code == 502
    assert "server_tool_use" in raised.value.message
    [log] = wait_for_logs(1)
    assert (log.error_code, log.cost) == ("upstream_untranslatable_answer", 0)
    assert balance_of(funded_user) == before


def test_a_chat_clients_anthropic_headers_are_not_passed_on(client, fake):
    """A beta (a 1M-token context, say) could be billed above the catalog's price, and the
    translation is written for the default version: neither is sent."""
    client.chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={
            "anthropic-beta": "context-1m-2025-08-07",
            "anthropic-version": "2099-01-01",
        },
    )

    [headers] = fake.app.headers
    assert "anthropic-beta" not in headers
    assert headers["anthropic-version"] == "2023-06-01"


def test_arguments_nested_too_deep_are_a_400_that_costs_nothing(client, fake, funded_user):
    """They parse (json.loads), but the request could not be sent on: once a 500."""
    before = balance_of(funded_user)
    deep = '{"a":' * 990 + "1" + "}" * 990
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": deep}}

    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=CLAUDE,
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            ],
        )

    assert "'messages.1.tool_calls.0.function.arguments' holds JSON nested" in raised.value.message
    assert fake.app.requests == []
    [log] = wait_for_logs(1)
    assert (log.status_code, log.cost) == (400, 0)
    assert balance_of(funded_user) == before
