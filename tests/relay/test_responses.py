"""`POST /v1/responses` through the relay, with the official openai SDK.

Against the mock channel and against a fake upstream of the Responses API
(`tests/relay/fake_responses.py`); every event the SDK reads is also validated against
its types. Charges are computed here from the catalog's prices and the usage the
upstream reported.
"""

import asyncio
import json
import math
import time
from decimal import Decimal

import httpx
import openai
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent

from billing.models import Account
from billing.services import account_credit, account_debit
from logs.models import RequestLog
from models_catalog.models import CatalogModel
from models_catalog.pricing import MICRO_USD_PER_TOKEN_AT_RATIO_ONE
from models_catalog.services import catalog_entry_create
from relay import conversations, mock
from relay.counting import prompt_tokens
from relay.limits import Limiter
from relay.models import Channel
from relay.routing import routing_table_expire
from relay.usage import StreamUsageReader
from tests.factories import UserFactory
from tests.fake_upstream import ServerThread
from tokens.services import token_create

from . import fake_responses
from .conftest import MODEL, make_channel, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
EXPECTED_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * len(fake_responses.TEXT_PIECES),
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture(scope="session")
def fake_responses_server():
    app = fake_responses.FakeResponses()
    server = ServerThread(app).start()
    server.app = app
    yield server
    server.stop()


@pytest.fixture
def fake(fake_responses_server):
    """The fake Responses upstream, with what it saw and made forgotten."""
    fake_responses_server.app.state = fake_responses.FakeResponsesState()
    return fake_responses_server


@pytest.fixture
def client(relay_url, token_key):
    return openai.OpenAI(base_url=relay_url, api_key=token_key, max_retries=0)


def _balance(user) -> int:
    return Account.objects.get(pk=user.pk).balance


def expected_cost(model: CatalogModel, *, prompt: int, cached: int, completion: int) -> int:
    """The catalog's price of this usage, computed here: input, cached input at its ratio
    (input price without one), output at the completion ratio; rounded up once."""
    per_token = model.model_ratio * MICRO_USD_PER_TOKEN_AT_RATIO_ONE  # the default line: 1
    cached_share = model.cached_ratio if model.cached_ratio is not None else Decimal(1)
    exact = (
        (prompt - cached) * per_token
        + cached * cached_share * per_token
        + completion * model.completion_ratio * per_token
    )
    return math.ceil(exact)


def _events(stream) -> list:
    """Every event of an SDK stream, each validated against the SDK's types."""
    events = []
    for event in stream:
        EVENTS.validate_python(event.model_dump(mode="json", exclude_unset=True, warnings=False))
        events.append(event)
    return events


# --- the mock channel (`make run`) --------------------------------------------------------


def test_the_mock_channel_answers_responses_whole_and_streamed(
    client, catalog_model, funded_user, return_grants
):
    make_channel("mock", "", kind="mock")
    balance = _balance(funded_user)

    whole = client.responses.create(model=MODEL, input="Hello", max_output_tokens=50)
    Response.model_validate(whole.model_dump(mode="json", exclude_unset=True))
    assert whole.output_text == mock.REPLY
    assert whole.status == "completed"

    events = _events(client.responses.create(model=MODEL, input="Hello", stream=True))
    kinds = [event.type for event in events]
    assert kinds[:4] == EXPECTED_EVENTS[:4]
    assert kinds[-4:] == EXPECTED_EVENTS[-4:]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == mock.REPLY
    completed = events[-1].response

    first, second = wait_for_logs(2)
    for log, usage in ((first, whole.usage), (second, completed.usage)):
        assert (log.status_code, log.usage_estimated) == (200, False)
        assert (log.prompt_tokens, log.completion_tokens) == (
            usage.input_tokens,
            usage.output_tokens,
        )
        assert log.cost == expected_cost(
            catalog_model, prompt=usage.input_tokens, cached=0, completion=usage.output_tokens
        )
    assert second.is_stream
    return_grants()
    assert _balance(funded_user) == balance - first.cost - second.cost


def test_the_mock_channel_stops_at_max_output_tokens_with_response_incomplete(
    client, catalog_model
):
    make_channel("mock", "", kind="mock")

    events = _events(
        client.responses.create(model=MODEL, input="Hello", max_output_tokens=3, stream=True)
    )

    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    [log] = wait_for_logs(1)
    assert (log.completion_tokens, log.usage_estimated) == (3, False)


# --- a Responses upstream ------------------------------------------------------------------


def test_a_whole_response_is_billed_by_its_usage_and_store_passes_as_sent(
    client, fake, default_group, catalog_model, funded_user, return_grants
):
    # Given a model with a cached-input price, on an upstream that reports 30 of the 40
    # input tokens as cached and 5 of the output tokens as reasoning
    cached_model = CatalogModel(
        name="gpt-cached-responses",
        vendor=catalog_model.vendor,
        model_ratio=Decimal("1.5"),
        completion_ratio=Decimal("4"),
        cached_ratio=Decimal("0.1"),
    )
    catalog_entry_create(entry=cached_model)
    make_channel("a", f"{fake.url}/a/cached-30/reasoning-5/v1", served_models=[cached_model.name])
    balance = _balance(funded_user)

    # When the client asks not to store it, with includes and reasoning
    response = client.responses.create(
        model=cached_model.name,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
        store=False,
        include=["reasoning.encrypted_content"],
        reasoning={"effort": "low"},
    )

    # Then the upstream got them untouched, and the answer is the upstream's
    assert response.output_text == fake_responses.TEXT
    [seen] = fake.app.state.requests
    assert (seen.store, seen.include, seen.reasoning) == (
        False,
        ["reasoning.encrypted_content"],
        {"effort": "low"},
    )
    assert not seen.sent_stream_options
    # And it is billed to the micro-USD: cached tokens at the cached ratio, reasoning
    # tokens as output
    [log] = wait_for_logs(1)
    output = len(fake_responses.TEXT_PIECES) + 5
    assert (log.prompt_tokens, log.cached_tokens, log.completion_tokens) == (
        fake_responses.INPUT_TOKENS,
        30,
        output,
    )
    assert log.cost == expected_cost(
        cached_model, prompt=fake_responses.INPUT_TOKENS, cached=30, completion=output
    )
    return_grants()
    assert _balance(funded_user) == balance - log.cost


def test_store_left_out_is_not_added(client, fake, catalog_model):
    make_channel("a", f"{fake.url}/a/v1")

    client.responses.create(model=MODEL, input="Hi")
    client.responses.create(model=MODEL, input="Hi", store=True)

    assert [seen.store for seen in fake.app.state.requests] == [fake_responses.MISSING, True]


def test_a_stream_is_passed_as_sent_and_billed_by_response_completed(
    client, fake, catalog_model, funded_user, return_grants
):
    make_channel("a", f"{fake.url}/a/cached-10/v1")
    balance = _balance(funded_user)

    # When the client streams with create(stream=True) and with the stream helper
    events = _events(client.responses.create(model=MODEL, input="Hi", stream=True, store=False))
    with client.responses.stream(model=MODEL, input="Hi") as stream:
        helped = _events(stream)
        final = stream.get_final_response()

    # Then each got every event, in order, as OpenAI sends them
    assert [event.type for event in events] == EXPECTED_EVENTS
    assert [event.sequence_number for event in events] == list(range(len(EXPECTED_EVENTS)))
    assert [event.type for event in helped] == EXPECTED_EVENTS
    assert final.output_text == fake_responses.TEXT
    # The relay added no stream_options (the upstream would refuse them), kept store
    assert [seen.sent_stream_options for seen in fake.app.state.requests] == [False, False]
    assert [seen.store for seen in fake.app.state.requests] == [False, fake_responses.MISSING]
    # And each is billed by the usage of its response.completed
    logs = wait_for_logs(2)
    output = len(fake_responses.TEXT_PIECES)
    for log in logs:
        assert (log.prompt_tokens, log.cached_tokens, log.completion_tokens) == (40, 10, output)
        assert (log.is_stream, log.usage_estimated) == (True, False)
        assert log.cost == expected_cost(catalog_model, prompt=40, cached=10, completion=output)
    return_grants()
    assert _balance(funded_user) == balance - sum(log.cost for log in logs)


def test_an_incomplete_stream_is_billed_by_response_incomplete(client, fake, catalog_model):
    make_channel("a", f"{fake.url}/a/incomplete/v1")

    events = _events(
        client.responses.create(model=MODEL, input="Hi", max_output_tokens=2, stream=True)
    )

    assert events[-1].type == "response.incomplete"
    [log] = wait_for_logs(1)
    assert (log.prompt_tokens, log.completion_tokens, log.usage_estimated) == (40, 2, False)


def test_a_failed_stream_without_usage_is_charged_its_counted_prompt_as_an_estimate(
    client, fake, catalog_model
):
    make_channel("a", f"{fake.url}/a/failed-unbilled/v1")

    events = _events(client.responses.create(model=MODEL, input="Hi", stream=True))

    assert events[-1].type == "response.failed"
    assert events[-1].response.usage is None
    [log] = wait_for_logs(1)
    counted = prompt_tokens(endpoint="responses", body={"input": "Hi"}, model=MODEL)
    assert (log.prompt_tokens, log.completion_tokens, log.usage_estimated) == (
        counted,
        len(fake_responses.TEXT_PIECES),
        True,
    )


def test_a_client_that_disconnects_mid_stream_is_charged_for_what_was_produced(
    relay_url, token_key, fake, catalog_model, funded_user, return_grants
):
    make_channel("slow", f"{fake.url}/slow/chunk-delay-100/v1")
    balance = _balance(funded_user)

    # When the client reads two text deltas and hangs up
    with httpx.stream(
        "POST",
        f"{relay_url}/responses",
        json={"model": MODEL, "input": "Hi", "stream": True},
        headers={"authorization": f"Bearer {token_key}"},
        timeout=30,
    ) as response:
        deltas = 0
        for line in response.iter_lines():
            deltas += line.startswith("data: ") and '"response.output_text.delta"' in line
            if deltas == 2:
                break

    # Then it is logged as a disconnect and charged, as the other streams are
    [log] = wait_for_logs(1)
    assert (log.status_code, log.error_code) == (499, "client_disconnected")
    assert log.usage_estimated is True
    assert 2 <= log.completion_tokens < len(fake_responses.TEXT_PIECES)
    assert log.cost > 0
    deadline = time.monotonic() + 5
    while fake.app.state.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.app.state.in_flight == 0
    return_grants()
    account = Account.objects.get(pk=funded_user.pk)
    assert (account.balance, account.reserved) == (balance - log.cost, 0)


# --- previous_response_id -----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_conversation_continues_on_the_channel_that_made_its_response(
    stream, client, fake, catalog_model
):
    # Given two channels of the same priority for the model
    make_channel("a", f"{fake.url}/a/v1")
    make_channel("b", f"{fake.url}/b/v1")

    # When a response is made, then continued five times (each from the one before)
    if stream:
        with client.responses.stream(model=MODEL, input="Hi") as first:
            previous = first.get_final_response().id
    else:
        previous = client.responses.create(model=MODEL, input="Hi").id
    for _turn in range(5):
        previous = client.responses.create(
            model=MODEL, input="And?", previous_response_id=previous
        ).id

    # Then every continuation went to the channel that made the first response
    channels = [seen.channel for seen in fake.app.state.requests]
    assert len(channels) == 6
    assert set(channels) == {channels[0]}


def test_another_accounts_response_id_is_not_found_and_nothing_is_charged(
    client, relay_url, fake, catalog_model, funded_user, return_grants
):
    make_channel("a", f"{fake.url}/a/v1")
    made = client.responses.create(model=MODEL, input="Hi").id
    other_user = UserFactory()
    account_credit(user_id=other_user.pk, amount=10_000_000, idempotency_key="other")
    _token, other_key = token_create(user=other_user, name="other")
    other = openai.OpenAI(base_url=relay_url, api_key=other_key, max_retries=0)
    wait_for_logs(1)
    return_grants()
    balances = (_balance(funded_user), _balance(other_user))
    forwarded = len(fake.app.state.requests)

    # When another account continues that response, or one nobody made
    for response_id in (made, "resp_0123456789abcdef"):
        with pytest.raises(openai.NotFoundError) as refused:
            other.responses.create(model=MODEL, input="Hi", previous_response_id=response_id)
        error = refused.value.body
        assert (error["code"], error["param"], error["type"]) == (
            "previous_response_not_found",
            "previous_response_id",
            "not_found_error",
        )

    # Then nothing was forwarded, logged or charged
    assert len(fake.app.state.requests) == forwarded
    assert RequestLog.objects.count() == 1
    return_grants()
    assert (_balance(funded_user), _balance(other_user)) == balances
    assert Account.objects.get(pk=other_user.pk).reserved == 0


def test_a_conversation_whose_channel_is_gone_is_refused_clearly(client, fake, catalog_model):
    channel = make_channel("a", f"{fake.url}/a/v1")
    make_channel("b", f"{fake.url}/b/v1")
    # The first response made on channel a
    Channel.objects.filter(name="b").update(status=Channel.Status.DISABLED)
    routing_table_expire()
    made = client.responses.create(model=MODEL, input="Hi").id
    Channel.objects.filter(name="b").update(status=Channel.Status.ENABLED)
    Channel.objects.filter(pk=channel.pk).update(status=Channel.Status.DISABLED)
    routing_table_expire()

    with pytest.raises(openai.APIStatusError) as refused:
        client.responses.create(model=MODEL, input="Hi", previous_response_id=made)

    assert refused.value.status_code == 503
    assert refused.value.body["code"] == "conversation_channel_unavailable"
    assert "previous_response_id" in refused.value.body["message"]
    assert len(fake.app.state.requests) == 1


def test_previous_response_id_means_nothing_to_chat_completions(
    relay_url, token_key, fake_upstream, openai_channel
):
    # A chat request carrying the field (which chat does not know) is not looked up
    response = httpx.post(
        f"{relay_url}/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "previous_response_id": "resp_unknown",
        },
        headers={"authorization": f"Bearer {token_key}"},
    )

    assert response.status_code == 200


def test_a_response_not_stored_is_not_remembered(client, fake, catalog_model):
    make_channel("a", f"{fake.url}/a/v1")
    made = client.responses.create(model=MODEL, input="Hi", store=False).id

    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, input="Hi", previous_response_id=made)


# --- the context a continuation carries is held -----------------------------------------


def test_a_continuation_is_held_for_the_conversation_it_carries(
    client, fake, catalog_model, funded_user, return_grants
):
    # Given a response whose context is 100,000 input tokens and its answer
    make_channel("a", f"{fake.url}/a/input-100000/v1")
    made = client.responses.create(model=MODEL, input="Hi", max_output_tokens=16)
    context = made.usage.input_tokens + made.usage.output_tokens
    assert context > 100_000
    # And a balance that covers the new input and completion alone, but not the
    # conversation behind them (the upstream bills it again as input: 3 micro-USD a token)
    body = {"model": MODEL, "input": "And then?", "max_output_tokens": 16}
    alone = prompt_tokens(endpoint="responses", body=body, model=MODEL) * 3 + 16 * 6
    wait_for_logs(1)
    return_grants()
    left = context * 3 // 2
    assert alone < left < context * 3
    account_debit(
        user_id=funded_user.pk, amount=_balance(funded_user) - left, idempotency_key="spend"
    )
    forwarded = len(fake.app.state.requests)

    # When the conversation is continued, it is refused for its hold, and nothing moved
    with pytest.raises(openai.APIStatusError) as refused:
        client.responses.create(previous_response_id=made.id, **body)
    assert refused.value.status_code == 402
    assert refused.value.body["code"] == "insufficient_quota"
    assert len(fake.app.state.requests) == forwarded
    return_grants()
    assert _balance(funded_user) == left
    assert Account.objects.get(pk=funded_user.pk).reserved == 0

    # While the same input without the conversation is held only for itself, and answered
    assert client.responses.create(**body).status == "completed"


# --- what the relay could not charge, or could read of another account ---------------------


def _refused(client, fake, user, return_grants, **request) -> dict:
    """Send a request that must be refused 400; return its error after checking that
    nothing was forwarded, logged, held or charged."""
    make_channel("a", f"{fake.url}/a/v1")
    balance = _balance(user)

    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MODEL, **request)

    assert fake.app.state.requests == []
    assert RequestLog.objects.count() == 0
    return_grants()
    account = Account.objects.get(pk=user.pk)
    assert (account.balance, account.reserved) == (balance, 0)
    return refused.value.body


def test_a_background_response_is_refused(client, fake, catalog_model, funded_user, return_grants):
    error = _refused(client, fake, funded_user, return_grants, input="Hi", background=True)

    assert (error["code"], error["param"]) == ("unsupported_parameter", "background")
    assert "Background responses are not offered" in error["message"]


FUNCTION = {"type": "function", "name": "weather", "parameters": {"type": "object"}}


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search"},
        {"type": "web_search_preview"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "image_generation"},
        {
            "type": "computer_use_preview",
            "display_width": 1024,
            "display_height": 768,
            "environment": "linux",
        },
        {"type": "mcp", "server_label": "wiki", "server_url": "https://mcp.example/sse"},
        {"type": "local_shell"},
    ],
)
def test_a_tool_openai_runs_is_refused_with_its_type_named(
    tool, client, fake, catalog_model, funded_user, return_grants
):
    error = _refused(client, fake, funded_user, return_grants, input="Hi", tools=[FUNCTION, tool])

    assert (error["code"], error["param"]) == ("unsupported_tool", "tools.1.type")
    assert f"'{tool['type']}'" in error["message"]
    assert "usage" in error["message"]


@pytest.mark.parametrize(
    ("tool_choice", "named"),
    [
        ({"type": "web_search_preview"}, "web_search_preview"),
        ({"type": "mcp", "server_label": "wiki"}, "mcp"),
        (
            {
                "type": "allowed_tools",
                "mode": "auto",
                "tools": [{"type": "function", "name": "weather"}, {"type": "image_generation"}],
            },
            "image_generation",
        ),
    ],
)
def test_a_tool_choice_forcing_a_tool_openai_runs_is_refused(
    tool_choice, named, client, fake, catalog_model, funded_user, return_grants
):
    error = _refused(
        client,
        fake,
        funded_user,
        return_grants,
        input="Hi",
        tools=[FUNCTION],
        tool_choice=tool_choice,
    )

    assert (error["code"], error["param"]) == ("unsupported_tool", "tool_choice")
    assert f"'{named}'" in error["message"]


def test_function_and_custom_tools_billed_as_tokens_pass(client, fake, catalog_model):
    make_channel("a", f"{fake.url}/a/v1")
    custom = {"type": "custom", "name": "sql", "description": "Runs a SQL query"}

    response = client.responses.create(
        model=MODEL,
        input="Hi",
        tools=[FUNCTION, custom],
        tool_choice={"type": "custom", "name": "sql"},
    )

    assert response.status == "completed"
    assert len(fake.app.state.requests) == 1


def _user(*parts: dict) -> list[dict]:
    return [{"role": "user", "content": [{"type": "input_text", "text": "Look"}, *parts]}]


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        ({"input": "Hi", "conversation": "conv_123"}, "conversation"),
        ({"input": "Hi", "conversation": {"id": "conv_123"}}, "conversation"),
        ({"input": "Hi", "prompt": {"id": "pmpt_123", "version": "2"}}, "prompt"),
        ({"prompt": {"id": "pmpt_123"}}, "prompt"),
        (
            {
                "input": "Hi",
                "extra_body": {"prompt_cache_options": {"comparison_response_id": "r"}},
            },
            "prompt_cache_options.comparison_response_id",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_123"}]}, "input.0.type"),
        (
            {"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]},
            "input.0.type",
        ),
        (
            {"input": _user({"type": "input_file", "file_id": "file-123"})},
            "input.0.content.1.file_id",
        ),
        (
            {"input": _user({"type": "input_image", "file_id": "file-123", "detail": "auto"})},
            "input.0.content.1.file_id",
        ),
        (
            {
                "input": [
                    {
                        "type": "function_call_output",
                        "call_id": "c1",
                        "output": [{"type": "input_file", "file_id": "file-123"}],
                    }
                ]
            },
            "input.0.output.0.file_id",
        ),
        (
            {"input": [{"type": "reasoning", "id": "rs_123", "summary": []}]},
            "input.0.encrypted_content",
        ),
    ],
)
def test_what_names_state_stored_upstream_is_refused(
    request_, param, client, fake, catalog_model, funded_user, return_grants
):
    error = _refused(client, fake, funded_user, return_grants, **request_)

    assert (error["code"], error["param"]) == ("unsupported_parameter", param)
    assert "previous_response_id" in error["message"]


def test_reasoning_items_carrying_their_encrypted_content_pass(client, fake, catalog_model):
    make_channel("a", f"{fake.url}/a/v1")

    client.responses.create(
        model=MODEL,
        input=[
            *_user({"type": "input_image", "image_url": "https://example.com/a.png"}),
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
        ],
    )

    assert len(fake.app.state.requests) == 1


# --- models whose channels do not speak Responses -----------------------------------------


@pytest.mark.parametrize("kind", ["anthropic", "gemini", "azure"])
def test_a_model_without_a_responses_channel_is_told_where_to_call_it(
    kind, client, fake, catalog_model, funded_user, return_grants
):
    make_channel("other", f"{fake.url}/other/v1", kind=kind)
    balance = _balance(funded_user)

    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MODEL, input="Hi")

    error = refused.value.body
    assert (error["code"], error["param"], error["type"]) == (
        "responses_not_supported",
        "model",
        "invalid_request_error",
    )
    assert "/v1/chat/completions" in error["message"]
    assert "/v1/messages" in error["message"]
    assert fake.app.state.requests == []
    assert RequestLog.objects.count() == 0
    return_grants()
    assert _balance(funded_user) == balance


def test_the_refusal_is_translated(relay_url, token_key, fake, catalog_model):
    make_channel("other", f"{fake.url}/other/v1", kind="anthropic")

    response = httpx.post(
        f"{relay_url}/responses",
        json={"model": MODEL, "input": "Hi"},
        headers={"authorization": f"Bearer {token_key}", "accept-language": "zh-CN"},
    )

    assert response.status_code == 400
    assert "Responses" in response.json()["error"]["message"]
    assert "模型" in response.json()["error"]["message"]


# --- bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": 5}, "input"),
        ({"input": {"role": "user"}}, "input"),
        ({"input": ["Hi"]}, "input.0"),
        ({"input": [{"role": "user", "content": 3}]}, "input.0"),
        ({"input": [{"content": "Hi"}]}, "input.0"),
        ({"input": [{"type": 7}]}, "input.0"),
        ({"input": "Hi", "instructions": ["Be brief"]}, "instructions"),
        ({"input": "Hi", "tools": {"type": "function"}}, "tools"),
        ({"input": "Hi", "previous_response_id": 12}, "previous_response_id"),
        ({"input": "Hi", "previous_response_id": ""}, "previous_response_id"),
        ({"input": "Hi", "max_output_tokens": 0}, "max_output_tokens"),
    ],
)
def test_a_malformed_body_is_refused_with_the_field_named(
    body, param, relay_url, token_key, fake, catalog_model
):
    make_channel("a", f"{fake.url}/a/v1")

    response = httpx.post(
        f"{relay_url}/responses",
        json={"model": MODEL, **body},
        headers={"authorization": f"Bearer {token_key}"},
    )

    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert fake.app.state.requests == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["type", "role", "content", "text", "image_url", "output", "name"]),
            children,
            max_size=3,
        )
    ),
    max_leaves=12,
)
RESPONSES_KEYS = [
    "input",
    "instructions",
    "tools",
    "previous_response_id",
    "stream",
    "store",
    "max_output_tokens",
    "include",
]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"model": st.sampled_from([MODEL, "mock-responses"])},
            optional=dict.fromkeys(RESPONSES_KEYS, JSON),
        ),
    )
)
def test_random_bodies_never_get_a_5xx(body, relay_url, token_key, fake, catalog_model):
    if not Channel.objects.exists():
        make_channel("a", f"{fake.url}/a/v1")
        catalog_entry_create(
            entry=CatalogModel(
                name="mock-responses",
                vendor=catalog_model.vendor,
                model_ratio=Decimal(1),
                completion_ratio=Decimal(1),
            )
        )
        make_channel("mock", "", kind="mock", served_models=["mock-responses"])

    response = httpx.post(
        f"{relay_url}/responses",
        content=json.dumps(body),
        headers={"authorization": f"Bearer {token_key}", "content-type": "application/json"},
        timeout=30,
    )

    assert response.status_code < 500, response.text


# --- reading usage, counting prompts -------------------------------------------------------


@pytest.mark.parametrize("end", ["response.completed", "response.incomplete", "response.failed"])
def test_the_stream_reader_bills_what_the_ending_event_reports(end):
    reader = StreamUsageReader(responses=True)
    usage = {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 100},
        "output_tokens": 9,
        "output_tokens_details": {"reasoning_tokens": 4},
        "total_tokens": 129,
    }
    created = {"type": "response.created", "response": {"id": "resp_1", "usage": None}}
    delta = {"type": "response.output_text.delta", "delta": "Hi"}
    ended = {"type": end, "response": {"id": "resp_1", "usage": usage}}
    stream = b"".join(
        f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
        for event in (created, delta, ended)
    )

    # Fed in pieces that cut lines anywhere
    for start in range(0, len(stream), 7):
        reader.feed(stream[start : start + 7])

    result = reader.result(prompt_tokens=1)
    assert (result.prompt_tokens, result.cached_tokens, result.completion_tokens) == (120, 100, 9)
    assert (reader.response_id, result.is_estimated) == ("resp_1", False)


def test_a_responses_prompt_counts_as_the_same_chat_prompt():
    tool = {
        "name": "weather",
        "description": "The weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    chat = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": "Sunny."},
        ],
        "tools": [{"type": "function", "function": tool}],
    }
    responses = {
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
            {"type": "message", "role": "assistant", "content": "Sunny."},
        ],
        "tools": [{"type": "function", **tool}],
    }

    for model in ("gpt-4o", "claude-sonnet-4"):
        assert prompt_tokens(endpoint="responses", body=responses, model=model) == prompt_tokens(
            endpoint="chat", body=chat, model=model
        )


def test_a_responses_prompt_counts_images_calls_and_their_outputs():
    base = {"input": "Hi"}
    with_items = {
        "input": [
            {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "Sunny in Paris."},
            {"type": "item_reference", "id": "msg_1"},
        ]
    }

    counted = prompt_tokens(endpoint="responses", body=with_items, model="gpt-4o")

    # An image by URL counts as GPT-4o's smallest (85); the call and its output as text
    assert counted > 85 + prompt_tokens(endpoint="responses", body=base, model="gpt-4o")


# --- what is remembered of a response ------------------------------------------------------


def test_a_response_is_remembered_in_redis_for_30_days_under_its_account(settings, monkeypatch):
    limiter = Limiter(settings.REDIS_URL, 60)
    monkeypatch.setattr(conversations, "limiter", lambda: limiter)

    async def remember_and_look_up():
        try:
            await conversations.response_remember(
                "resp_redis", channel_id=7, context_tokens=46, user_id=1
            )
            found = (
                await conversations.response_made("resp_redis", user_id=1),
                await conversations.response_made("resp_redis", user_id=2),
            )
            key = conversations.response_key("resp_redis", user_id=1)
            client = limiter.connection().client
            ttl, value = await client.ttl(key), await client.get(key)
            # An id remembered before the context was: its channel alone
            await client.set(key, "7")
            legacy = await conversations.response_made("resp_redis", user_id=1)
            await client.delete(key)
            return found, ttl, value, legacy
        finally:
            await limiter.aclose()

    found, ttl, value, legacy = asyncio.run(remember_and_look_up())

    # Only the channel's id and the context's size are kept, only the account that made
    # it finds it
    assert found == (conversations.MadeResponse(7, 46), None)
    assert value == b"7:46"
    assert 30 * 24 * 3600 - 60 < ttl <= 30 * 24 * 3600
    assert legacy == conversations.MadeResponse(7, 0)


def test_without_redis_a_response_is_remembered_in_memory(monkeypatch):
    monkeypatch.setattr(conversations, "limiter", lambda: Limiter("", 60))
    monkeypatch.setattr(conversations, "MAX_LOCAL_RESPONSES", 2)
    monkeypatch.setattr(conversations, "_local", conversations.OrderedDict())

    async def remember_three():
        for number in (1, 2, 3):
            await conversations.response_remember(
                f"resp_{number}", channel_id=number, context_tokens=number * 10, user_id=1
            )
        return [
            await conversations.response_made(f"resp_{number}", user_id=1) for number in (1, 2, 3)
        ] + [await conversations.response_made("resp_3", user_id=2)]

    # The oldest goes first past the bound; another account finds nothing
    assert asyncio.run(remember_three()) == [
        None,
        conversations.MadeResponse(2, 20),
        conversations.MadeResponse(3, 30),
        None,
    ]
