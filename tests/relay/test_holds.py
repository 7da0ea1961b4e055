"""Holds through the relay: the prompt as counted plus the completion allowed.

A balance that covers a call is never refused for the size of its body; an answer that
costs more than its hold is charged in full; a refusal changes nothing.
"""

import base64
import logging
import os
import struct
import time
import zlib
from decimal import Decimal

import httpx
import pytest

from billing.models import Account
from billing.selectors import books_drift
from billing.services import account_credit
from logs.models import RequestLog
from models_catalog.models import CatalogModel, Vendor
from models_catalog.services import catalog_entry_create
from tests.factories import UserFactory
from tokens.services import token_create

from .conftest import make_channel, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)

CLAUDE = "claude-sonnet-4-20250514"


def noisy_png(width: int, height: int) -> bytes:
    """Return a real PNG of random grey pixels (it does not compress: a photo's weight)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = b"".join(b"\x00" + os.urandom(width) for _ in range(height))
    idat = chunk(b"IDAT", zlib.compress(raw, 0))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + idat + chunk(b"IEND", b"")


@pytest.fixture
def claude(default_group):
    vendor, _created = Vendor.objects.get_or_create(name="anthropic", display_name="Anthropic")
    model = CatalogModel(
        name=CLAUDE,
        vendor=vendor,
        model_ratio=Decimal("1.5"),  # $3 / $15 per 1M tokens
        completion_ratio=Decimal(5),
        context_window=200_000,
        completion_reserve=8_192,
    )
    catalog_entry_create(entry=model)
    return model


def account_with(amount: int, name: str) -> tuple[int, str]:
    user = UserFactory()
    account_credit(user_id=user.pk, amount=amount, idempotency_key=f"test:{name}")
    _token, key = token_create(user=user, name=name)
    return user.pk, key


def books(user_id: int) -> tuple[int, int, int]:
    account = Account.objects.get(pk=user_id)
    return account.balance, account.reserved, account.used


def post(relay_url: str, key: str, body: dict, path: str = "chat/completions") -> httpx.Response:
    return httpx.post(
        f"{relay_url}/{path}", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


def test_two_dollars_pay_for_a_one_megabyte_image_to_claude(
    relay_url, claude, fake_upstream, return_grants
):
    # Given $2 and a 1 MB photo (as a data URL, 1.4 MB of body: the estimate before
    # counted it 1,000,000 prompt tokens, a $3 hold at this model's price)
    user_id, key = account_with(2_000_000, "photo")
    make_channel("claude", f"{fake_upstream.url}/v1", served_models=[CLAUDE])
    image = base64.b64encode(noisy_png(1024, 1000)).decode()
    body = {
        "model": CLAUDE,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this photo?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
                ],
            }
        ],
    }
    assert len(image) > 1_300_000

    # When it is sent
    response = post(relay_url, key, body)

    # Then it is answered and charged what the upstream reported, not refused
    assert response.status_code == 200, response.text
    [log] = wait_for_logs(1)
    assert log.cost == (log.prompt_tokens + 5 * log.completion_tokens) * 3
    return_grants()
    assert books(user_id) == (2_000_000 - log.cost, 0, log.cost)
    assert books_drift(user_ids=[user_id]) == []


def test_the_models_completion_reserve_is_held_without_max_tokens(
    relay_url, claude, fake_upstream, return_grants
):
    # Given a balance that covers a short prompt plus the model's reserve of 8,192 tokens
    # (8,192 x 5 x 3 = 122,880 micro-USD) but not 30,000 tokens asked for
    user_id, key = account_with(130_000, "reserve")
    make_channel("claude", f"{fake_upstream.url}/v1", served_models=[CLAUDE])
    body = {"model": CLAUDE, "messages": [{"role": "user", "content": "Hi"}]}

    # When it asks for 30,000 completion tokens, it is refused and nothing moved
    refused = post(relay_url, key, {**body, "max_tokens": 30_000})
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert fake_upstream.app.stats.requests == 0
    return_grants()
    assert books(user_id) == (130_000, 0, 0)

    # And without max_tokens the reserve is held, and the call is answered
    assert post(relay_url, key, body).status_code == 200
    [log] = wait_for_logs(1)
    return_grants()
    assert books(user_id) == (130_000 - log.cost, 0, log.cost)


def test_an_answer_costing_more_than_its_hold_is_charged_in_full_and_recorded(
    relay_url, claude, fake_upstream, return_grants, caplog
):
    # Given $0.10 and an upstream that bills a 90,000-token prompt for a two-word one
    # (270,000 micro-USD of prompt: far past the hold of a few tokens and 100 completion
    # tokens, and past the balance)
    user_id, key = account_with(100_000, "overrun")
    make_channel("claude", f"{fake_upstream.url}/prompt-90000/v1", served_models=[CLAUDE])

    # When it is sent, the hold lets it through
    with caplog.at_level(logging.WARNING, logger="billing.meter"):
        response = post(
            relay_url,
            key,
            {"model": CLAUDE, "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]},
        )
        assert response.status_code == 200
        [log] = wait_for_logs(1)
        return_grants()

    # Then the whole cost is charged: the balance owes the overrun, and the meter said so
    assert log.prompt_tokens == 90_000
    assert log.cost == (90_000 + 5 * log.completion_tokens) * 3
    assert books(user_id) == (100_000 - log.cost, 0, log.cost)
    assert any("more than its hold" in record.getMessage() for record in caplog.records)
    assert books_drift(user_ids=[user_id]) == []
    # And an account that owes is refused until it pays
    assert post(relay_url, key, {"model": CLAUDE, "messages": []}).status_code == 402


def test_a_refused_call_leaves_the_books_unchanged(relay_url, claude, fake_upstream, return_grants):
    # Given $0.05 and a call whose count alone costs more: 500 KB of text
    user_id, key = account_with(50_000, "refused")
    make_channel("claude", f"{fake_upstream.url}/v1", served_models=[CLAUDE])
    text = "Tell me about this. " * 25_000

    response = post(
        relay_url,
        key,
        {"model": CLAUDE, "max_tokens": 10, "messages": [{"role": "user", "content": text}]},
    )

    assert response.status_code == 402
    assert fake_upstream.app.stats.requests == 0
    return_grants()
    assert books(user_id) == (50_000, 0, 0)
    assert not RequestLog.objects.exists()


def tiny_png_url() -> str:
    data = zlib.compress(b"\x00\x00")

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload))
        )

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", data)
    return "data:image/png;base64," + base64.b64encode(png).decode()


@pytest.mark.parametrize(
    ("raw", "allowed"),
    [
        (b'{"model": "M", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}", {400}),
        (b'{"model": "M", "max_tokens": 1e400, "messages": []}', {400}),
        (b'{"model": "M", "n": 123456789012345678901234567890, "messages": []}', {400}),
        (b'{"model": "M", "messages": [{"role": "user", "content": "a\\u0000b\\ud800"}]}', {200}),
        (
            b'{"model": "M", "messages": [{"role": "user", "content": [{"type": "image_url",'
            b' "image_url": {"url": "data:image/png;base64,%%%not base64"}}]}]}',
            {200},
        ),
        (
            b'{"model": "M", "messages": [{"role": "user", "content": [{"type": "image_url",'
            b' "image_url": {"url": "data:image/png;base64,iVBORw0KGgo' + b"A" * 40 + b'"}}]}]}',
            {200},
        ),
    ],
    ids=["deep-json", "huge-float", "huge-n", "nul-and-surrogate", "bogus-base64", "bogus-png"],
)
def test_hostile_bodies_are_never_a_server_error(
    relay_url, token_key, catalog_model, openai_channel, raw, allowed
):
    response = httpx.post(
        f"{relay_url}/chat/completions",
        content=raw.replace(b'"M"', f'"{catalog_model.name}"'.encode()),
        headers={"authorization": f"Bearer {token_key}", "content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code in allowed, response.text


def test_ten_thousand_images_are_counted_in_bounded_time(
    relay_url, token_key, catalog_model, openai_channel
):
    url = tiny_png_url()
    body = {
        "model": catalog_model.name,
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}] * 10_000}
        ],
    }
    started = time.perf_counter()
    response = post(relay_url, token_key, body)
    assert response.status_code == 200
    assert time.perf_counter() - started < 10
    [log] = wait_for_logs(1)
    assert log.cost > 0


@pytest.fixture(scope="module")
def vendor_upstream():
    from bench.holds.vendor import VendorUpstream
    from tests.fake_upstream import ServerThread

    app = VendorUpstream()
    server = ServerThread(app).start()
    server.app = app
    yield server
    server.stop()


def test_no_call_of_the_corpus_is_refused_when_its_balance_covers_it(
    relay_url, vendor_upstream, return_grants
):
    # Given the holds benchmark's corpus (bench/holds), the demo catalog's models on a
    # channel to the mock upstream that bills as the vendors count, and for each call an
    # account holding exactly what the call can cost: its prompt as the vendor counts it
    # plus the completion it allows
    from bench.holds import corpus, vendor
    from models_catalog.demo_catalog import load_demo_catalog
    from models_catalog.pricing import request_cost
    from models_catalog.selectors import model_price
    from relay.calls import completion_allowed

    load_demo_catalog()
    calls = corpus.generate(40, seed=5)
    make_channel(
        "vendors", f"{vendor_upstream.url}/v1", served_models=sorted({c.model for c in calls})
    )
    refused = []
    for number, call in enumerate(calls):
        price = model_price(model_name=call.model, pricing_group_id=None)
        assert price is not None
        prompt = vendor.prompt_tokens(call.endpoint, call.body, call.fetched)
        allowed = (
            completion_allowed(body=call.body, price=price) if call.endpoint != "embeddings" else 0
        )
        balance = request_cost(price, prompt_tokens=prompt, completion_tokens=allowed)
        _user_id, key = account_with(balance, f"corpus-{number}")
        vendor_upstream.app.fetched = call.fetched
        path = {"chat": "chat/completions", "messages": "messages"}.get(call.endpoint, "embeddings")

        # When it is sent through the relay
        response = post(relay_url, key, call.body, path=path)

        # Then it is answered (never refused for what it cannot cost)
        if response.status_code != 200:
            refused.append((call.kind, call.model, response.status_code, response.text[:200]))
    assert refused == []
    logs = wait_for_logs(len(calls))
    assert len(logs) == len(calls)
    return_grants()
    assert books_drift() == []
