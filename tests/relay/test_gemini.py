"""A Gemini channel (Google's native API, `relay.gemini`) serving `/v1/chat/completions`
and `/v1/messages`: the official SDKs in front of the relay, a fake Gemini behind it
(tests/relay/fake_gemini.py) that reads every request with google-genai's own models
and answers in Gemini's wire format."""

import base64
import json
from decimal import ROUND_CEILING, Decimal

import anthropic
import openai
import pytest
from google.genai import types

from billing.models import Account
from models_catalog.models import CatalogModel, Vendor
from models_catalog.services import catalog_entry_create
from relay.models import Channel
from relay.probe import channel_test, channels_probe_disabled

from .conftest import UPSTREAM_KEY, make_channel, wait_for_logs
from .fake_gemini import FakeGemini, text_answer

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "gemini-test"
UPSTREAM_MODEL = "gemini-2.5-flash"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image").decode()
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": ["integer", "null"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="session")
def gemini_server():
    from tests.fake_upstream import ServerThread

    app = FakeGemini()
    server = ServerThread(app).start()
    server.app = app
    yield server
    server.stop()


@pytest.fixture
def gemini(gemini_server):
    gemini_server.app.reset()
    return gemini_server


@pytest.fixture
def gemini_model(default_group):
    vendor, _created = Vendor.objects.get_or_create(name="google", display_name="Google")
    model = CatalogModel(
        name=MODEL,
        vendor=vendor,
        model_ratio=Decimal("0.15"),
        completion_ratio=Decimal("4"),
        cached_ratio=Decimal("0.25"),
    )
    catalog_entry_create(entry=model)
    return model


@pytest.fixture
def key(funded_user, gemini_model):
    from tokens.services import token_create

    _token, raw_key = token_create(user=funded_user, name="gemini tests")
    return raw_key


def gemini_channel(server, name="gemini", prefix="", **options):
    options.setdefault("served_models", [MODEL])
    options.setdefault("model_mapping", {MODEL: UPSTREAM_MODEL})
    return make_channel(name, f"{server.url}{prefix}/v1beta", kind="gemini", **options)


def client(relay_url, key):
    return openai.OpenAI(base_url=relay_url, api_key=key, max_retries=0)


def expected_cost(model, *, prompt, completion, cached=0):
    """The catalog's formula, computed here from the model's own prices."""
    weighted = (prompt - cached) + cached * model.cached_ratio + completion * model.completion_ratio
    return int((weighted * model.model_ratio * 2).to_integral_value(rounding=ROUND_CEILING))


def balance(user):
    return Account.objects.get(pk=user.pk).balance


def test_text_and_system_are_translated_and_billed_with_cached_tokens(
    relay_url, key, gemini, gemini_model, funded_user, return_grants
):
    channel = gemini_channel(gemini)
    gemini.app.answer = text_answer(
        "Bonjour.", prompt=1200, candidates=30, thoughts=70, cached=1000
    )
    before = balance(funded_user)

    answer = client(relay_url, key).chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Answer in French."},
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
        max_tokens=200,
        temperature=0.5,
        top_p=0.9,
        stop=["END"],
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.2,
    )

    # The request went to the mapped model's generateContent with the key in its header
    [sent] = gemini.app.requests
    assert sent["path"].endswith(f"/v1beta/models/{UPSTREAM_MODEL}:generateContent")
    assert sent["key"] == UPSTREAM_KEY
    assert gemini.app.invalid == []
    assert sent["body"] == {
        "contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
        "systemInstruction": {"parts": [{"text": "Answer in French."}, {"text": "Be brief."}]},
        "generationConfig": {
            "maxOutputTokens": 200,
            "temperature": 0.5,
            "topP": 0.9,
            "stopSequences": ["END"],
            "seed": 7,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.2,
        },
    }
    # and the answer came back as a chat completion, thoughts billed as output
    assert answer.choices[0].message.content == "Bonjour."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == MODEL
    assert answer.usage.prompt_tokens == 1200
    assert answer.usage.completion_tokens == 100
    assert answer.usage.prompt_tokens_details.cached_tokens == 1000
    [log] = wait_for_logs(1)
    cost = expected_cost(gemini_model, prompt=1200, completion=100, cached=1000)
    assert (log.prompt_tokens, log.completion_tokens, log.cached_tokens) == (1200, 100, 1000)
    assert log.cost == cost
    assert log.channel_id == channel.pk
    return_grants()
    assert balance(funded_user) == before - cost


def test_images_and_audio_are_sent_inline_or_by_url(relay_url, key, gemini):
    gemini_channel(gemini)
    client(relay_url, key).chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    {"type": "input_audio", "input_audio": {"data": PNG, "format": "wav"}},
                ],
            }
        ],
    )
    assert gemini.app.invalid == []
    assert gemini.app.last["contents"][0]["parts"] == [
        {"text": "Compare"},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
        {"inlineData": {"mimeType": "audio/wav", "data": PNG}},
    ]


def function_call_answer(*calls, thought_signature=None):
    parts = [
        types.Part(
            function_call=types.FunctionCall(name=name, args=args, id=call_id),
            thought_signature=thought_signature if number == 0 else None,
        )
        for number, (name, args, call_id) in enumerate(calls)
    ]
    return types.GenerateContentResponse(
        candidates=[
            types.Candidate(
                index=0,
                content=types.Content(role="model", parts=parts),
                finish_reason=types.FinishReason.STOP,
            )
        ],
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=50, candidates_token_count=12, total_token_count=62
        ),
    )


def test_a_tool_round_trip(relay_url, key, gemini):
    gemini_channel(gemini)
    sdk = client(relay_url, key)
    question = {"role": "user", "content": "Weather in Paris and Rome?"}
    gemini.app.answer = function_call_answer(
        ("get_weather", {"city": "Paris"}, None),
        ("get_weather", {"city": "Rome", "days": 2}, "gemini-id-2"),
        thought_signature=b"signature",
    )

    # When the model is offered a tool it must call
    answer = sdk.chat.completions.create(
        model=MODEL, messages=[question], tools=[WEATHER], tool_choice="required"
    )

    # Then Gemini was offered a function declaration with the JSON schema as given
    assert gemini.app.invalid == []
    assert gemini.app.last["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parametersJsonSchema": WEATHER["function"]["parameters"],
                }
            ]
        }
    ]
    assert gemini.app.last["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    # and its calls came back as tool calls (Gemini's id kept, one made up otherwise)
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "tool_calls"
    first, second = message.tool_calls
    assert first.id.startswith("call_")
    assert second.id == "gemini-id-2"
    calls = [(call.function.name, json.loads(call.function.arguments)) for call in (first, second)]
    assert calls == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome", "days": 2}),
    ]

    # When the results are sent back, a named tool forced
    gemini.app.answer = text_answer("Sunny in both.")
    sdk.chat.completions.create(
        model=MODEL,
        messages=[
            question,
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": first.id, "content": "18 °C"},
            {"role": "tool", "tool_call_id": second.id, "content": '{"celsius": 21}'},
            {"role": "user", "content": "Thanks"},
        ],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )

    # Then Gemini read the calls and their results, named and in order
    assert gemini.app.invalid == []
    assert gemini.app.last["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {
                        "name": "get_weather",
                        "args": {"city": "Paris"},
                        "id": first.id,
                    },
                    "thoughtSignature": "skip_thought_signature_validator",
                },
                {
                    "functionCall": {
                        "name": "get_weather",
                        "args": {"city": "Rome", "days": 2},
                        "id": "gemini-id-2",
                    }
                },
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": first.id,
                        "name": "get_weather",
                        "response": {"content": "18 °C"},
                    }
                },
                {
                    "functionResponse": {
                        "id": "gemini-id-2",
                        "name": "get_weather",
                        "response": {"celsius": 21},
                    }
                },
            ],
        },
        {"role": "user", "parts": [{"text": "Thanks"}]},
    ]
    assert gemini.app.last["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
    ],
)
def test_finish_reasons(relay_url, key, gemini, reason, expected):
    gemini_channel(gemini)
    gemini.app.answer = text_answer("Partial", finish_reason=reason)
    answer = client(relay_url, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}]
    )
    assert answer.choices[0].finish_reason == expected


def test_a_blocked_prompt_is_filtered_and_its_usage_billed(
    relay_url, key, gemini, gemini_model, funded_user, return_grants
):
    gemini_channel(gemini)
    gemini.app.answer = types.GenerateContentResponse(
        prompt_feedback=types.GenerateContentResponsePromptFeedback(
            block_reason=types.BlockedReason.SAFETY
        ),
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=9, total_token_count=9
        ),
    )
    before = balance(funded_user)
    answer = client(relay_url, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Something bad"}]
    )
    assert answer.choices[0].finish_reason == "content_filter"
    assert answer.choices[0].message.content is None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (9, 0)
    [log] = wait_for_logs(1)
    assert log.cost == expected_cost(gemini_model, prompt=9, completion=0)
    return_grants()
    assert balance(funded_user) == before - log.cost


OSLO = {"city": "Oslo"}


def stream_chunks():
    """A stream as Gemini sends it: text in pieces, a call, usage growing on each chunk."""

    def usage(candidates, cached=None):
        return types.GenerateContentResponseUsageMetadata(
            prompt_token_count=800,
            candidates_token_count=candidates,
            thoughts_token_count=20,
            cached_content_token_count=cached,
            total_token_count=820 + candidates,
        )

    def chunk(parts, finish=None, candidates=1):
        return types.GenerateContentResponse(
            response_id="stream-1",
            candidates=[
                types.Candidate(
                    index=0,
                    content=types.Content(role="model", parts=parts),
                    finish_reason=finish,
                )
            ],
            usage_metadata=usage(candidates, cached=600),
        )

    return [
        chunk([types.Part(text="Let me ")]),
        chunk([types.Part(text="check.")], candidates=3),
        chunk(
            [types.Part(function_call=types.FunctionCall(name="get_weather", args=OSLO))],
            finish=types.FinishReason.STOP,
            candidates=9,
        ),
    ]


def test_a_stream_is_translated_to_chunks_and_billed_from_the_last_usage(
    relay_url, key, gemini, gemini_model, funded_user, return_grants
):
    gemini_channel(gemini)
    gemini.app.chunks = stream_chunks()
    before = balance(funded_user)

    stream = client(relay_url, key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    [sent] = gemini.app.requests
    assert sent["path"].endswith(f"/models/{UPSTREAM_MODEL}:streamGenerateContent")
    assert sent["query"] == "alt=sse"
    with_choices = [chunk for chunk in chunks if chunk.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in with_choices)
    assert text == "Let me check."
    [call] = [d for c in with_choices for d in c.choices[0].delta.tool_calls or []]
    assert (call.index, call.function.name, json.loads(call.function.arguments)) == (
        0,
        "get_weather",
        {"city": "Oslo"},
    )
    assert call.id.startswith("call_")
    assert with_choices[-1].choices[0].finish_reason == "tool_calls"
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert (usage.prompt_tokens, usage.completion_tokens) == (800, 29)
    assert usage.prompt_tokens_details.cached_tokens == 600
    [log] = wait_for_logs(1)
    assert log.is_stream
    assert not log.usage_estimated
    cost = expected_cost(gemini_model, prompt=800, completion=29, cached=600)
    assert log.cost == cost
    return_grants()
    assert balance(funded_user) == before - cost


def test_a_stream_without_usage_asked_has_no_usage_chunk(relay_url, key, gemini):
    gemini_channel(gemini)
    stream = client(relay_url, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    chunks = list(stream)
    assert all(chunk.choices for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from Gemini."
    assert chunks[-1].choices[0].finish_reason == "stop"
    [log] = wait_for_logs(1)
    assert (log.prompt_tokens, log.completion_tokens) == (10, 4)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"response_format": {"type": "grammar"}}, "response_format"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools.0"),
        ({"tools": [WEATHER], "parallel_tool_calls": False}, "parallel_tool_calls"),
    ],
)
def test_what_cannot_be_translated_is_refused_and_not_charged(
    relay_url, key, gemini, funded_user, return_grants, extra, field
):
    gemini_channel(gemini)
    before = balance(funded_user)
    with pytest.raises(openai.BadRequestError) as refused:
        client(relay_url, key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], **extra
        )
    assert refused.value.status_code == 400
    assert f"'{field}" in refused.value.message
    assert "Gemini" in refused.value.message
    assert gemini.app.requests == []
    # The refusal is settled (its row written) before the grant is returned.
    [log] = wait_for_logs(1)
    assert log.cost == 0
    return_grants()
    account = Account.objects.get(pk=funded_user.pk)
    assert (account.balance, account.reserved) == (before, 0)


def test_a_late_system_message_and_an_unknown_image_url_are_refused(relay_url, key, gemini):
    gemini_channel(gemini)
    sdk = client(relay_url, key)
    with pytest.raises(openai.BadRequestError, match=r"messages\.1"):
        sdk.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hi"}, {"role": "system", "content": "Later"}],
        )
    with pytest.raises(openai.BadRequestError, match=r"messages\.0\.content\.0"):
        sdk.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x.test/img"}}],
                }
            ],
        )
    assert gemini.app.requests == []


def test_json_schema_response_format_is_carried(relay_url, key, gemini):
    gemini_channel(gemini)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    client(relay_url, key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        n=2,
    )
    assert gemini.app.invalid == []
    assert gemini.app.last["generationConfig"] == {
        "candidateCount": 2,
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }


def test_a_gemini_refusal_comes_back_in_openais_shape(relay_url, key, gemini, funded_user):
    gemini_channel(gemini, prefix="/status-400")
    before = balance(funded_user)
    with pytest.raises(openai.BadRequestError) as refused:
        client(relay_url, key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}]
        )
    assert refused.value.body == {
        "message": "Fake failure 400.",
        "type": "invalid_request_error",
        "code": "INVALID_ARGUMENT",
        "param": None,
    }
    [log] = wait_for_logs(1)
    assert log.status_code == 400
    assert log.cost == 0
    assert balance(funded_user) == before


def test_a_wrong_key_is_set_aside_and_the_next_key_answers(relay_url, key, gemini, funded_user):
    """Gemini answers a wrong key with 400 API_KEY_INVALID, not 401: the key is set aside
    as after a 401, the channel's next key answers, and the customer sees none of it."""
    gemini_channel(gemini, api_key="", api_keys=["bad-key-1234", "good-key-5678"])
    answer = client(relay_url, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}]
    )
    assert answer.choices[0].message.content == "Hello from Gemini."
    assert [request["key"] for request in gemini.app.requests] == [
        "bad-key-1234",
        "good-key-5678",
    ]
    [log] = wait_for_logs(1)
    assert log.status_code == 200
    client(relay_url, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Again"}]
    )
    assert gemini.app.requests[-1]["key"] == "good-key-5678"
    assert len(gemini.app.requests) == 3


@pytest.mark.parametrize("prefix", ["/status-429", "/status-500"])
def test_429_and_5xx_fail_over_to_the_next_channel(relay_url, key, gemini, prefix):
    failing = gemini_channel(gemini, name="failing", prefix=prefix, priority=10)
    healthy = gemini_channel(gemini, name="healthy")
    answer = client(relay_url, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}]
    )
    assert answer.choices[0].message.content == "Hello from Gemini."
    assert [request["path"].split("/v1beta")[0] for request in gemini.app.requests] == [prefix, ""]
    [log] = wait_for_logs(1)
    assert log.channel_id == healthy.pk
    failing.refresh_from_db()
    assert failing.consecutive_failures == 1


def test_messages_are_served_by_a_gemini_channel(relay_url, key, gemini):
    gemini_channel(gemini)
    gemini.app.answer = function_call_answer(("get_weather", {"city": "Paris"}, "fc-1"))
    sdk = anthropic.Anthropic(base_url=relay_url.removesuffix("/v1"), api_key=key, max_retries=0)
    message = sdk.messages.create(
        model=MODEL,
        max_tokens=50,
        system="Be brief.",
        tools=[
            {
                "name": "get_weather",
                "input_schema": WEATHER["function"]["parameters"],
            }
        ],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert gemini.app.invalid == []
    assert gemini.app.last["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert message.stop_reason == "tool_use"
    [call] = message.content
    assert (call.id, call.name, call.input) == ("fc-1", "get_weather", {"city": "Paris"})
    assert (message.usage.input_tokens, message.usage.output_tokens) == (50, 12)

    gemini.app.chunks = stream_chunks()
    with sdk.messages.stream(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Let me check."
    assert final.content[1].input == {"city": "Oslo"}
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens) == (200, 600)
    assert final.usage.output_tokens == 29

    gemini_channel(gemini, name="refusing", prefix="/status-400", priority=10)
    with pytest.raises(anthropic.BadRequestError) as refused:
        sdk.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.body["error"]["message"] == "Fake failure 400."


def test_the_probe_and_the_admin_test_send_a_real_generate_content(relay_url, gemini):
    channel = gemini_channel(gemini)
    Channel.objects.filter(pk=channel.pk).update(status=Channel.Status.AUTO_DISABLED)

    assert channels_probe_disabled() == 1

    [sent] = gemini.app.requests
    assert sent["path"].endswith(f"/models/{UPSTREAM_MODEL}:generateContent")
    assert gemini.app.invalid == []
    assert sent["body"]["generationConfig"] == {"maxOutputTokens": 1}
    channel.refresh_from_db()
    assert channel.status == Channel.Status.ENABLED

    result = channel_test(channel)
    assert result.ok
    assert result.upstream_model == UPSTREAM_MODEL


def test_the_admin_form_takes_a_gemini_channel_with_its_key(transactional_db):
    from relay.admin import ChannelForm

    data = {
        "name": "google",
        "kind": "gemini",
        "base_url": "https://generativelanguage.googleapis.com/v1beta",
        "api_keys": "",
        "served_models": MODEL,
        "priority": 0,
        "weight": 1,
        "connect_timeout_seconds": 5,
        "read_timeout_seconds": 300,
        "status": "enabled",
    }
    assert "api_keys" in ChannelForm(data).errors
    form = ChannelForm({**data, "api_keys": "AIza-test-key-0001"})
    assert form.is_valid(), form.errors


def test_a_403_refusing_the_request_is_passed_back_and_refuses_no_key(
    relay_url, key, gemini, funded_user
):
    """A client can make Gemini answer 403 (a file it may not read): that refuses the
    request, not our key. It comes back to the client; no key is set aside, no other
    channel tried, and the channel is not counted against."""
    failing = gemini_channel(
        gemini, prefix="/status-403", priority=10, api_key="", api_keys=["k-one", "k-two"]
    )
    gemini_channel(gemini, name="healthy")
    before = balance(funded_user)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client(relay_url, key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}]
        )
    assert refused.value.status_code == 403
    assert refused.value.body["code"] == "PERMISSION_DENIED"
    assert len(gemini.app.requests) == 1
    [log] = wait_for_logs(1)
    assert (log.status_code, log.cost) == (403, 0)
    assert balance(funded_user) == before
    failing.refresh_from_db()
    assert failing.consecutive_failures == 0
    for _again in range(2):
        with pytest.raises(openai.PermissionDeniedError):
            client(relay_url, key).chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Again"}]
            )
    # The keys take turns as before: the first was not set aside.
    keys = [request["key"] for request in gemini.app.requests]
    assert keys == ["k-one", "k-two", "k-one"]


def test_a_key_blocked_for_the_api_is_set_aside_and_the_next_key_answers(relay_url, key, gemini):
    gemini_channel(gemini, api_key="", api_keys=["blocked-key-1234", "good-key-5678"])
    answer = client(relay_url, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}]
    )
    assert answer.choices[0].message.content == "Hello from Gemini."
    assert [request["key"] for request in gemini.app.requests] == [
        "blocked-key-1234",
        "good-key-5678",
    ]


def call_then(*messages, arguments="{}"):
    function = {"name": "get_weather", "arguments": arguments}
    call = {"id": "c1", "type": "function", "function": function}
    return [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [call]},
        *messages,
    ]


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        (call_then(arguments='{"a":' * 990 + "1" + "}" * 990), "messages.1.tool_calls.0"),
        (call_then({"role": "tool", "tool_call_id": "c1", "content": "[" * 100000}), "messages.2"),
        (
            call_then(
                {"role": "user", "content": []},
                {"role": "tool", "tool_call_id": "c1", "content": "Sunny"},
            ),
            "messages.2.content",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "http://[x/a.png"}}],
                }
            ],
            "messages.0.content.0",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {
                                "url": "https://generativelanguage.googleapis.com/v1beta/files/x"
                            },
                        }
                    ],
                }
            ],
            "messages.0.content.0",
        ),
    ],
)
def test_odd_messages_are_a_400_naming_the_field_and_cost_nothing(
    relay_url, key, gemini, funded_user, return_grants, messages, field
):
    gemini_channel(gemini, served_models=[MODEL])
    before = balance(funded_user)
    with pytest.raises(openai.BadRequestError) as refused:
        client(relay_url, key).chat.completions.create(
            model=MODEL, messages=messages, tools=[WEATHER]
        )
    assert f"'{field}" in refused.value.message
    assert gemini.app.requests == []
    [log] = wait_for_logs(1)
    assert (log.status_code, log.cost) == (400, 0)
    return_grants()
    assert balance(funded_user) == before


def test_a_stream_cut_short_is_billed_by_the_last_usage_gemini_sent(
    relay_url, key, gemini, gemini_model
):
    """Usage reaches the client only in the closing chunk; a stream the upstream broke
    off before it is billed by the usage its chunks carried, not an estimate."""
    gemini_channel(gemini)
    gemini.app.chunks = stream_chunks()
    gemini.app.break_after = 2
    stream = client(relay_url, key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER],
        stream=True,
    )
    chunks = list(stream)  # Ended where the upstream broke off: no usage chunk.
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Let me check."
    assert all(chunk.usage is None for chunk in chunks)
    [log] = wait_for_logs(1)
    assert log.error_code == "upstream_stream_interrupted"
    assert not log.usage_estimated
    assert (log.prompt_tokens, log.completion_tokens, log.cached_tokens) == (800, 23, 600)
    assert log.cost == expected_cost(gemini_model, prompt=800, completion=23, cached=600)
