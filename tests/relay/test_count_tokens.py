"""`POST /v1/messages/count_tokens` through the official `anthropic` SDK: answered by the
relay from its own count (`relay.counting`), never forwarded, never billed, refused in
Anthropic's error shape."""

import json
from decimal import Decimal

import anthropic
import httpx
import pytest

from accounts.services import user_line_set
from billing.models import Account
from logs.models import RequestLog
from models_catalog.models import CatalogModel, PricingGroup, Vendor
from models_catalog.services import catalog_entry_create
from relay import counting
from tokens.services import token_create

from .conftest import MODEL, make_channel

pytestmark = pytest.mark.django_db(transaction=True)

CLAUDE = "claude-sonnet-4-20250514"
MESSAGES = [
    {"role": "user", "content": "What is the weather in Paris today?"},
    {"role": "assistant", "content": [{"type": "text", "text": "Let me look that up."}]},
    {"role": "user", "content": [{"type": "text", "text": "Thanks, and in Lyon too."}]},
]
TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather of a city today.",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city's name."}},
            "required": ["city"],
        },
    }
]


@pytest.fixture
def claude(catalog_model, fake_upstream):
    vendor = Vendor.objects.get(name="testvendor")
    model = CatalogModel(
        name=CLAUDE, vendor=vendor, model_ratio=Decimal("1.5"), completion_ratio=Decimal(5)
    )
    catalog_entry_create(entry=model)
    make_channel("claude", f"{fake_upstream.url}/v1", kind="anthropic", served_models=[CLAUDE])
    return model


def _client(relay_url: str, key: str) -> anthropic.Anthropic:
    # The SDK appends /v1/... itself.
    return anthropic.Anthropic(base_url=relay_url.removesuffix("/v1"), api_key=key, max_retries=0)


def test_count_tokens_is_comets_count_and_neither_forwarded_nor_billed(
    relay_url, token_key, claude, fake_upstream, funded_user, return_grants
):
    balance = Account.objects.get(pk=funded_user.pk).balance

    counted = _client(relay_url, token_key).messages.count_tokens(
        model=CLAUDE, system="You are terse.", messages=MESSAGES, tools=TOOLS
    )

    expected = counting.prompt_tokens(
        endpoint="messages",
        body={"model": CLAUDE, "system": "You are terse.", "messages": MESSAGES, "tools": TOOLS},
        model=CLAUDE,
    )
    assert isinstance(counted, anthropic.types.MessageTokensCount)
    assert counted.input_tokens == expected
    # The tools' prompt alone is Anthropic's documented 313 tokens.
    assert counted.input_tokens > counting.ANTHROPIC_TOOL_PROMPT_TOKENS
    assert fake_upstream.app.stats.requests == 0
    return_grants()
    assert Account.objects.get(pk=funded_user.pk).balance == balance
    assert RequestLog.objects.count() == 0


def test_count_tokens_grows_with_the_prompt(relay_url, token_key, claude):
    client = _client(relay_url, token_key)

    short = client.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
    long = client.messages.count_tokens(
        model=CLAUDE, messages=[{"role": "user", "content": "hi " * 5000}]
    )

    assert 0 < short.input_tokens < 10
    assert 4000 < long.input_tokens < 6000


def test_count_tokens_takes_a_bearer_key_too(relay_url, token_key, claude):
    response = httpx.post(
        f"{relay_url}/messages/count_tokens",
        headers={"authorization": f"Bearer {token_key}"},
        json={"model": CLAUDE, "messages": [{"role": "user", "content": "hi"}]},
    )

    assert response.status_code == 200
    assert set(response.json()) == {"input_tokens"}


def test_count_tokens_with_a_bad_key_is_an_authentication_error(relay_url, claude):
    with pytest.raises(anthropic.AuthenticationError) as raised:
        _client(relay_url, "sk-not-a-real-key").messages.count_tokens(
            model=CLAUDE, messages=[{"role": "user", "content": "hi"}]
        )

    assert raised.value.status_code == 401
    assert raised.value.body["error"]["type"] == "authentication_error"


def test_count_tokens_respects_the_line(relay_url, funded_user, claude, catalog_model):
    # Given a line that may call only MODEL
    line = PricingGroup(name="training", display_name="Training", allows_all_models=False)
    catalog_entry_create(entry=line)
    line.catalog_models.set([catalog_model])
    user_line_set(
        user=funded_user,
        pricing_group_id=line.pk,
        concurrency_limit=None,
        rpm_limit=None,
        tpm_limit=None,
        actor=None,
    )
    _token, key = token_create(user=funded_user, name="line")

    with pytest.raises(anthropic.NotFoundError) as raised:
        _client(relay_url, key).messages.count_tokens(
            model=CLAUDE, messages=[{"role": "user", "content": "hi"}]
        )

    assert raised.value.body["error"]["type"] == "not_found_error"
    assert "Training" in raised.value.body["error"]["message"]


def test_count_tokens_of_a_model_of_another_kind_says_its_endpoint(
    relay_url, token_key, catalog_model
):
    vendor = Vendor.objects.get(name="testvendor")
    catalog_entry_create(
        entry=CatalogModel(name="dall-e-3", vendor=vendor, kind="image", price_per_call=40_000)
    )
    catalog_entry_create(
        entry=CatalogModel(name="sora-2", vendor=vendor, kind="video", price_per_call=400_000)
    )
    client = _client(relay_url, token_key)

    with pytest.raises(anthropic.BadRequestError) as image:
        client.messages.count_tokens(model="dall-e-3", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.NotFoundError) as video:
        client.messages.count_tokens(model="sora-2", messages=[{"role": "user", "content": "x"}])

    assert "/v1/images/generations" in image.value.body["error"]["message"]
    assert "coming soon" in video.value.body["error"]["message"]


def _raw(relay_url: str, key: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{relay_url}/messages/count_tokens",
        headers={"x-api-key": key, "content-type": "application/json", **headers},
        content=body,
    )


def _anthropic_error(response: httpx.Response) -> dict:
    payload = response.json()
    assert payload["type"] == "error"
    assert set(payload["error"]) == {"type", "message"}
    assert payload["error"]["message"]
    return payload["error"]


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


HOSTILE_BODIES = {
    "not json": b"{model: claude",
    "invalid utf-8": b'{"model": "\xff\xfe", "messages": []}',
    "a list": b"[1, 2, 3]",
    "no model": b'{"messages": [{"role": "user", "content": "hi"}]}',
    "model a number": b'{"model": 12, "messages": []}',
    "NUL in the model": b'{"model": "claude\\u0000x", "messages": []}',
    "lone surrogate in the model": b'{"model": "\\ud800", "messages": []}',
    "no messages": json.dumps({"model": CLAUDE}).encode(),
    "messages an object": json.dumps({"model": CLAUDE, "messages": {"role": "user"}}).encode(),
    "a system turn": json.dumps(
        {"model": CLAUDE, "messages": [{"role": "system", "content": "x"}]}
    ).encode(),
    "content a number": json.dumps(
        {"model": CLAUDE, "messages": [{"role": "user", "content": 10**30}]}
    ).encode(),
    "a block without type": json.dumps(
        {"model": CLAUDE, "messages": [{"role": "user", "content": [{"text": "x"}]}]}
    ).encode(),
    "system a number": json.dumps(
        {"model": CLAUDE, "system": 1e308, "messages": [{"role": "user", "content": "x"}]}
    ).encode(),
    "tools an object": json.dumps(
        {"model": CLAUDE, "tools": {"name": "x"}, "messages": [{"role": "user", "content": "x"}]}
    ).encode(),
    "deep JSON": ('{"model": "' + CLAUDE + '", "messages": ' + _deep(100_000) + "}").encode(),
    "a number of 5000 digits": (
        '{"model": "' + CLAUDE + '", "messages": [], "max_tokens": ' + "9" * 5000 + "}"
    ).encode(),
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
def test_hostile_bodies_are_400s_in_anthropics_shape(relay_url, token_key, claude, body):
    response = _raw(relay_url, token_key, body)

    assert response.status_code == 400
    assert _anthropic_error(response)["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "model", ["org/claude", "../../v1/messages", "模型/クロード", "claude-🦄", "x" * 10_000]
)
def test_unknown_models_with_slashes_and_unicode_are_not_found(relay_url, token_key, claude, model):
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})

    response = _raw(relay_url, token_key, body.encode())

    assert response.status_code == 404
    assert _anthropic_error(response)["type"] == "not_found_error"


def test_huge_numbers_and_odd_blocks_that_anthropic_allows_are_counted(
    relay_url, token_key, claude
):
    body = {
        "model": CLAUDE,
        "max_tokens": 10**30,
        "temperature": 1e308,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image", "source": {"type": "base64", "data": "not base64 !"}},
                    {"type": "tool_result", "tool_use_id": "x", "content": [{"type": "text"}]},
                    {"type": "unknown-block", "anything": [1, 2, {"deep": None}]},
                ],
            }
        ],
    }

    response = _raw(relay_url, token_key, json.dumps(body).encode())

    assert response.status_code == 200
    assert response.json()["input_tokens"] > 0


def test_other_refusals(relay_url, token_key, claude):
    wrong_type = httpx.post(
        f"{relay_url}/messages/count_tokens",
        headers={"x-api-key": token_key, "content-type": "text/plain"},
        content=b"hi",
    )
    wrong_method = httpx.get(f"{relay_url}/messages/count_tokens", headers={"x-api-key": token_key})
    no_key = httpx.post(f"{relay_url}/messages/count_tokens", json={"model": CLAUDE})

    assert wrong_type.status_code == 415
    assert _anthropic_error(wrong_type)["type"] == "invalid_request_error"
    assert wrong_method.status_code == 405
    assert _anthropic_error(wrong_method)
    assert no_key.status_code == 401
    assert _anthropic_error(no_key)["type"] == "authentication_error"


def test_a_validation_error_in_chinese(relay_url, token_key, claude):
    response = _raw(
        relay_url,
        token_key,
        json.dumps({"model": CLAUDE}).encode(),
        **{"accept-language": "zh-CN,zh;q=0.9"},
    )

    message = _anthropic_error(response)["message"]
    assert "messages" in message
    assert not message.startswith("'messages' is required")


def test_count_tokens_needs_no_channel_for_a_chat_model(relay_url, token_key, catalog_model):
    # MODEL has no channel here: the count is the relay's own
    counted = _client(relay_url, token_key).messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "hello there"}]
    )

    assert counted.input_tokens > 0
