"""Usage from the upstream when it reports it; estimated, and flagged, when it does not."""

import json
import math
from decimal import Decimal

import httpx
import pytest

from logs.breakdown import cost_breakdown
from models_catalog.models import CatalogModel
from models_catalog.services import catalog_entry_create
from relay.mock import REPLY
from relay.translate import ChatStreamToMessageEvents
from relay.usage import StreamUsageReader

from .conftest import MODEL, make_channel, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello please"}]}


@pytest.mark.parametrize("stream", [False, True])
def test_missing_usage_is_estimated_and_flagged(
    stream, relay_url, token_key, catalog_model, fake_upstream
):
    # Given an upstream that never reports usage
    make_channel("silent", f"{fake_upstream.url}/no-usage/v1")

    # When a request is answered
    response = httpx.post(
        f"{relay_url}/chat/completions",
        json={**CHAT, "stream": stream},
        headers={"authorization": f"Bearer {token_key}"},
        timeout=10,
    )

    # Then the answer passes untouched, and the log row is billed on an estimate it admits to
    assert response.status_code == 200
    [log] = wait_for_logs(1)
    assert log.usage_estimated is True
    # The prompt as the hold counted it (relay.counting): o200k_base's 4 tokens of text
    # ("user", "Say hello please") at 90 % for a model of no known vendor, plus 3 + 3
    # tokens of message markers
    assert log.prompt_tokens == 9
    if stream:
        assert b'"usage"' not in response.content
        assert log.completion_tokens == len(REPLY.split(" "))  # one per content event
    else:
        assert response.json()["usage"] is None
        assert log.completion_tokens == (len(REPLY) + 3) // 4
    assert log.cost == (log.prompt_tokens + 2 * log.completion_tokens) * 3


def test_a_translated_message_without_upstream_usage_is_estimated(
    relay_url, token_key, catalog_model, fake_upstream
):
    make_channel("silent", f"{fake_upstream.url}/no-usage/v1")

    response = httpx.post(
        f"{relay_url}/messages",
        json={"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]},
        headers={"x-api-key": token_key},
        timeout=10,
    )

    assert response.status_code == 200
    [log] = wait_for_logs(1)
    assert log.usage_estimated is True
    assert log.completion_tokens == (len(REPLY) + 3) // 4


@pytest.mark.parametrize(
    ("cached_ratio", "recorded"), [(Decimal("0.1"), Decimal("0.1")), (None, 1)]
)
def test_cached_prompt_tokens_are_billed_at_the_cached_ratio_the_row_keeps(
    cached_ratio, recorded, relay_url, token_key, catalog_model, fake_upstream
):
    # Given a model (with a cached-input price, or without) and an upstream reporting
    # 3 of the prompt's 4 tokens as cached
    name = "gpt-cached"
    catalog_entry_create(
        entry=CatalogModel(
            name=name,
            vendor=catalog_model.vendor,
            model_ratio=Decimal("1.5"),
            completion_ratio=Decimal(2),
            cached_ratio=cached_ratio,
        )
    )
    make_channel("caching", f"{fake_upstream.url}/cached-3/v1", served_models=[name])

    # When a request is answered
    response = httpx.post(
        f"{relay_url}/chat/completions",
        json={**CHAT, "model": name},
        headers={"authorization": f"Bearer {token_key}"},
        timeout=10,
    )

    # Then the cached tokens cost their share of an input token, the row keeps that
    # share, and the row's breakdown gives the charge exactly
    assert response.status_code == 200
    [log] = wait_for_logs(1)
    assert (log.prompt_tokens, log.cached_tokens) == (4, 3)
    assert log.cached_ratio == recorded
    share = Decimal(1) if cached_ratio is None else cached_ratio
    exact = (1 + 3 * share + 2 * log.completion_tokens) * 3
    assert log.cost == math.ceil(exact)
    breakdown = cost_breakdown(log)
    assert breakdown.computed == log.cost
    assert breakdown.is_exact
    assert breakdown.note == ""


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ({"prompt_tokens": 12, "completion_tokens": 3}, (12, 3, 0)),
        ({"prompt_tokens": -5, "completion_tokens": 2.9}, (0, 2, 0)),
        ({"prompt_tokens": 1e300, "completion_tokens": float("inf")}, (10**8, 10**8, 0)),
        ({"prompt_tokens": "12", "completion_tokens": True}, (0, 0, 0)),
        ({"prompt_tokens": float("nan"), "completion_tokens": None}, (0, 0, 0)),
        (
            {
                "prompt_tokens": 10,
                "completion_tokens": 1,
                "prompt_tokens_details": {"cached_tokens": -1},
            },
            (10, 1, 0),
        ),
    ],
)
def test_what_an_upstream_reports_is_read_as_a_count_that_can_be_priced(reported, expected):
    # A misbehaving upstream can neither break the settle of an answered request nor
    # make it cost a fortune: every count is a whole number from 0 to the maximum.
    from models_catalog.pricing import Rates, request_cost
    from relay.usage import usage_from_anthropic, usage_from_openai

    usage = usage_from_openai({"usage": reported})
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == expected
    rates = Rates(model_ratio=Decimal("2.5"), completion_ratio=Decimal(4))
    cost = request_cost(
        rates,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
    )
    assert 0 < cost < 10**13
    anthropic = usage_from_anthropic(
        {"usage": {"input_tokens": -3, "output_tokens": 1e40, "cache_read_input_tokens": "x"}}
    )
    assert (anthropic.prompt_tokens, anthropic.completion_tokens) == (0, 10**8)


def test_an_anthropic_stream_reads_the_final_prompt_count_of_message_delta():
    """A translated stream cannot know the prompt at message_start: its message_delta
    carries the count, cached tokens apart, and the reader takes it from there."""
    translator = ChatStreamToMessageEvents(model="m")
    chat = (
        b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":120,"completion_tokens":7,'
        b'"prompt_tokens_details":{"cached_tokens":100}}}\n\n'
        b"data: [DONE]\n\n"
    )
    reader = StreamUsageReader(anthropic=True)
    reader.feed(translator.feed(chat) + translator.finish())
    usage = reader.result(prompt_tokens=1)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (120, 7, 100)
    assert not usage.is_estimated


def anthropic_events(*events):
    return b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events)


START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "usage": {
            "input_tokens": 20,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 5,
            "output_tokens": 1,
        },
    },
}


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        # Anthropic-compatible gateways: a null or 0 prompt, no cache fields.
        ({"input_tokens": None, "output_tokens": 9}, (125, 9, 100)),
        ({"input_tokens": 0, "output_tokens": 9}, (125, 9, 100)),
        ({"output_tokens": 9}, (125, 9, 100)),
        # A final prompt count without cache fields: message_start's cache counts kept.
        ({"input_tokens": 30, "output_tokens": 9}, (135, 9, 100)),
        # Anthropic's own final counts, cache included.
        (
            {
                "input_tokens": 30,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0,
                "output_tokens": 9,
            },
            (30, 9, 0),
        ),
    ],
)
def test_a_message_delta_without_a_prompt_count_keeps_message_starts(delta, expected):
    reader = StreamUsageReader(anthropic=True)
    reader.feed(anthropic_events(START, {"type": "message_delta", "delta": {}, "usage": delta}))
    usage = reader.result(prompt_tokens=1)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == expected
