"""Tool use in `/v1/messages` through an OpenAI-compatible channel (`relay.translate`),
with the anthropic SDK in front of the relay and the fake upstream behind it."""

import json
import time

import anthropic
import pytest

from billing.models import Account
from logs.models import RequestLog

from .conftest import MODEL, make_channel, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TIME = {
    "name": "get_time",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


def _client(relay_url: str, key: str, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=relay_url.removesuffix("/v1"),
        api_key=key,
        max_retries=0,
        default_headers=headers or None,
    )


def _settle(relay) -> None:
    """Let the relay finish settling and give back what its meter holds in advance."""
    deadline = time.monotonic() + 5
    while relay.pending_work and time.monotonic() < deadline:
        time.sleep(0.005)
    relay.meter.return_all()


def test_a_tool_round_trip(relay_url, token_key, catalog_model, fake_upstream):
    make_channel("openai", f"{fake_upstream.url}/tool-calls/v1")
    client = _client(relay_url, token_key)

    # When the model is offered a tool it must use
    message = client.messages.create(
        model=MODEL,
        max_tokens=50,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=[QUESTION],
    )

    # Then the upstream was offered it as an OpenAI function
    sent = fake_upstream.app.stats.last_parameters
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": WEATHER["input_schema"],
            },
        }
    ]
    assert sent["tool_choice"] == "required"
    # and its tool call came back as a tool_use block
    assert message.stop_reason == "tool_use"
    [call] = message.content
    assert isinstance(call, anthropic.types.ToolUseBlock)
    assert (call.id, call.name, call.input) == ("call_fake_0", "get_weather", {"city": "Paris"})

    # When the tool's result is sent back, with more text in the same turn
    client.messages.create(
        model=MODEL,
        max_tokens=50,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        messages=[
            QUESTION,
            {"role": "assistant", "content": [block.model_dump() for block in message.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "18 °C"},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
    )

    # Then the upstream read the call and its result as OpenAI messages, in order
    assert fake_upstream.app.stats.last_tool_messages == [
        {"role": "user"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_fake_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_fake_0", "content": "18 °C"},
        {"role": "user"},
    ]
    sent = fake_upstream.app.stats.last_parameters
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    logs = wait_for_logs(2)
    assert [(log.status_code, log.prompt_tokens, log.completion_tokens) for log in logs] == [
        (200, 12, 7),
        (200, 12, 7),
    ]
    assert all(log.cost > 0 for log in logs)


def test_a_failed_tool_result_says_so(relay_url, token_key, catalog_model, fake_upstream):
    make_channel("openai", f"{fake_upstream.url}/v1")

    _client(relay_url, token_key).messages.create(
        model=MODEL,
        max_tokens=50,
        tools=[WEATHER],
        messages=[
            QUESTION,
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "no such city"}],
                        "is_error": True,
                    },
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "noon"},
                ],
            },
        ],
    )

    messages = fake_upstream.app.stats.last_tool_messages
    assert [call["id"] for call in messages[1]["tool_calls"]] == ["toolu_1", "toolu_2"]
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: no such city"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "noon"},
    ]


def test_streamed_tool_calls(relay_url, token_key, catalog_model, fake_upstream):
    make_channel("openai", f"{fake_upstream.url}/tool-calls/v1")

    with _client(relay_url, token_key).messages.stream(
        model=MODEL, max_tokens=50, tools=[WEATHER, TIME], messages=[QUESTION]
    ) as stream:
        events = list(stream)
        message = stream.get_final_message()

    assert message.stop_reason == "tool_use"
    assert [(block.type, block.id, block.name, block.input) for block in message.content] == [
        ("tool_use", "call_fake_0", "get_weather", {"city": "Paris"}),
        ("tool_use", "call_fake_1", "get_time", {"city": "Paris"}),
    ]
    # The arguments came in pieces, as the upstream sent them.
    pieces = [
        event.delta.partial_json
        for event in events
        if event.type == "content_block_delta" and event.delta.type == "input_json_delta"
    ]
    assert pieces == ['{"cit', 'y": "Pa', 'ris"}'] * 2
    starts = [event.index for event in events if event.type == "content_block_start"]
    stops = [event.index for event in events if event.type == "content_block_stop"]
    assert starts == stops == [0, 1]
    [log] = wait_for_logs(1)
    assert (log.status_code, log.is_stream, log.prompt_tokens, log.completion_tokens) == (
        200,
        True,
        12,
        7,
    )


UNTRANSLATABLE = [
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "text", "media_type": "text/plain", "data": "x"},
                        },
                        {"type": "text", "text": "Summarise this."},
                    ],
                }
            ]
        },
        "messages.0.content.0 (document)",
    ),
    (
        {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
        "tools.0 (web_search_20250305)",
    ),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "'thinking'"),
    ({"top_k": 5}, "'top_k'"),
    (
        {
            "messages": [
                QUESTION,
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [
                                {
                                    "type": "image",
                                    "source": {"type": "url", "url": "https://example.com/a.png"},
                                }
                            ],
                        }
                    ],
                },
            ]
        },
        "messages.2.content.0.content.0 (image)",
    ),
]


@pytest.mark.parametrize(
    ("fields", "named"),
    UNTRANSLATABLE,
    ids=["document", "server-tool", "thinking", "top-k", "image-result"],
)
def test_what_cannot_be_translated_is_a_400_and_charges_nothing(
    fields, named, relay_server, relay_url, token_key, catalog_model, fake_upstream, funded_user
):
    channel = make_channel("openai", f"{fake_upstream.url}/v1")
    balance = Account.objects.get(pk=funded_user.pk).balance

    with pytest.raises(anthropic.BadRequestError) as raised:
        _client(relay_url, token_key).messages.create(
            model=MODEL, max_tokens=50, messages=[QUESTION], extra_body=fields
        )

    assert raised.value.status_code == 400
    error = raised.value.body["error"]
    assert error["type"] == "invalid_request_error"
    assert named in error["message"]
    assert "OpenAI-compatible" in error["message"]
    assert fake_upstream.app.stats.requests == 0
    [log] = wait_for_logs(1)
    assert (log.status_code, log.error_code, log.cost) == (400, "untranslatable_request", 0)
    _settle(relay_server.relay)
    account = Account.objects.get(pk=funded_user.pk)
    assert (account.balance, account.reserved) == (balance, 0)
    channel.refresh_from_db()
    assert channel.consecutive_failures == 0


def test_the_refusal_speaks_chinese_when_asked(relay_url, token_key, catalog_model, fake_upstream):
    make_channel("openai", f"{fake_upstream.url}/v1")
    client = _client(relay_url, token_key, **{"accept-language": "zh-Hans"})

    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(
            model=MODEL, max_tokens=50, messages=[QUESTION], extra_body={"top_k": 5}
        )

    message = raised.value.body["error"]["message"]
    assert "'top_k'" in message
    assert "渠道" in message


def test_an_anthropic_channel_serves_what_an_openai_one_cannot(
    relay_url, token_key, catalog_model, fake_upstream
):
    make_channel("openai", f"{fake_upstream.url}/first/v1", priority=10)
    make_channel("anthropic", f"{fake_upstream.url}/second/v1", kind="anthropic")

    message = _client(relay_url, token_key).messages.create(
        model=MODEL, max_tokens=50, messages=[QUESTION], extra_body={"top_k": 5}
    )

    assert message.type == "message"
    assert fake_upstream.app.stats.by_scenario == {"second": 1}
    assert fake_upstream.app.stats.last_parameters["top_k"] == 5


def test_unreadable_tool_call_arguments_are_a_502_not_a_corrupt_call(
    relay_url, token_key, catalog_model, fake_upstream, funded_user
):
    channel = make_channel("openai", f"{fake_upstream.url}/bad-tool-arguments/v1")
    balance = Account.objects.get(pk=funded_user.pk).balance

    with pytest.raises(anthropic.APIStatusError) as raised:
        _client(relay_url, token_key).messages.create(
            model=MODEL, max_tokens=50, tools=[WEATHER], messages=[QUESTION]
        )

    assert raised.value.status_code == 502
    error = raised.value.body["error"]
    assert error["type"] == "api_error"
    assert "not a JSON object" in error["message"]
    assert fake_upstream.app.stats.requests == 1
    [log] = wait_for_logs(1)
    assert (log.status_code, log.error_code, log.cost) == (502, "upstream_unreadable_tool_call", 0)
    assert Account.objects.get(pk=funded_user.pk).balance == balance
    channel.refresh_from_db()
    assert channel.consecutive_failures == 0
    assert RequestLog.objects.count() == 1


def test_tool_input_round_trips_unicode(relay_url, token_key, catalog_model, fake_upstream):
    make_channel("openai", f"{fake_upstream.url}/v1")
    given = {"city": "北京", "nested": {"list": [1, 2.5, None, True]}}

    _client(relay_url, token_key).messages.create(
        model=MODEL,
        max_tokens=50,
        tools=[WEATHER],
        messages=[
            QUESTION,
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "get_weather", "input": given}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
        ],
    )

    [call] = fake_upstream.app.stats.last_tool_messages[1]["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == given
    assert fake_upstream.app.stats.last_tool_messages[2] == {
        "role": "tool",
        "tool_call_id": "t",
        "content": "",
    }
