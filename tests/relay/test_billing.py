"""Exact billing through HTTP: concurrent requests against a balance that pays for K."""

import asyncio
from decimal import Decimal
from io import StringIO

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from billing.grants import grant_release_expired
from billing.meter import LEASE_SECONDS
from billing.models import Account
from billing.selectors import books_drift
from billing.services import account_credit
from models_catalog.models import CatalogModel, Vendor
from models_catalog.services import catalog_entry_create
from tests.factories import UserFactory
from tokens.services import token_create

from .conftest import make_channel, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)

PRICE_PER_CALL = 7_000
PAYS_FOR = 6
REQUESTS = 20


@pytest.fixture
def per_call_model(default_group):
    vendor, _created = Vendor.objects.get_or_create(name="imagevendor", display_name="Images")
    model = CatalogModel(
        name="image-test",
        vendor=vendor,
        # A chat model priced per call: an image model is refused at the text endpoints.
        kind=CatalogModel.Kind.CHAT,
        price_per_call=PRICE_PER_CALL,
    )
    catalog_entry_create(entry=model)
    return model


def test_concurrent_requests_spend_exactly_the_balance(relay_url, per_call_model, fake_upstream):
    # Given a balance that pays for exactly K calls (and a little more, not enough for K+1)
    user = UserFactory()
    balance = PRICE_PER_CALL * PAYS_FOR + PRICE_PER_CALL - 1
    account_credit(user_id=user.pk, amount=balance, idempotency_key="test:exact")
    _token, key = token_create(user=user, name="exact")
    make_channel("fake", f"{fake_upstream.url}/delay-200/v1", served_models=["image-test"])

    # When N requests arrive at once
    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{relay_url}/chat/completions",
                        json={
                            "model": "image-test",
                            "messages": [{"role": "user", "content": "x"}],
                        },
                        headers={"authorization": f"Bearer {key}"},
                    )
                    for _ in range(REQUESTS)
                )
            )

    statuses = [response.status_code for response in asyncio.run(burst())]

    # Then exactly K succeed, the rest are told 402, and the books close
    assert statuses.count(200) == PAYS_FOR
    assert statuses.count(402) == REQUESTS - PAYS_FOR
    assert fake_upstream.app.stats.requests == PAYS_FOR
    logs = wait_for_logs(PAYS_FOR)
    assert [log.cost for log in logs] == [PRICE_PER_CALL] * PAYS_FOR
    account = Account.objects.get(pk=user.pk)
    assert (account.balance, account.reserved) == (PRICE_PER_CALL - 1, 0)
    assert books_drift() == []
    output = StringIO()
    call_command("reconcile", stdout=output)
    assert "no drift" in output.getvalue()


def test_a_token_quota_caps_spending_like_a_balance(relay_url, catalog_model, fake_upstream):
    from .conftest import MODEL

    user = UserFactory()
    account_credit(user_id=user.pk, amount=10_000_000, idempotency_key="test:quota")
    # A quota far below one request's reservation (max_tokens 4096 by default).
    _token, key = token_create(user=user, name="capped", quota_remaining=1_000)
    make_channel("fake", f"{fake_upstream.url}/v1")

    response = httpx.post(
        f"{relay_url}/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )
    small = httpx.post(
        f"{relay_url}/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )

    assert response.status_code == 402
    assert small.status_code == 200
    [log] = wait_for_logs(1)
    # prompt + 5 completion tokens at ratio 1.5, completion ratio 2, 2 micro-USD a token
    assert log.cost == (log.prompt_tokens + 5 * 2) * 3
    assert Account.objects.get(pk=user.pk).balance == 10_000_000 - log.cost
    assert Decimal(log.model_ratio) == Decimal("1.5")


def test_a_stream_longer_than_the_lease_keeps_its_hold(
    relay_url,
    token_key,
    catalog_model,
    fake_upstream,
    funded_user,
    return_grants,
    relay_server,
):
    # Given grants leased for 1 s and a stream of about 3 s
    meter = relay_server.relay.meter
    meter.return_all()
    meter.lease_seconds = 1
    make_channel("slow", f"{fake_upstream.url}/chunk-delay-150/v1")
    released = []

    async def stream_while_sweeping() -> httpx.Response:
        async with httpx.AsyncClient(timeout=20) as client:
            request = asyncio.ensure_future(
                client.post(
                    f"{relay_url}/chat/completions",
                    json={"model": catalog_model.name, "stream": True, "messages": []},
                    headers={"authorization": f"Bearer {token_key}"},
                )
            )
            # When the lease sweeper runs all along
            while not request.done():
                await asyncio.sleep(0.2)
                released.append(await sync_to_async(grant_release_expired)())
            return await request

    try:
        response = asyncio.run(stream_while_sweeping())
    finally:
        meter.lease_seconds = LEASE_SECONDS

    # Then the request was never released under the stream, and was billed in full
    assert response.status_code == 200
    assert len(released) >= 3  # the sweeper ran all along the stream
    assert sum(released) == 0
    [log] = wait_for_logs(1)
    assert log.cost > 0
    return_grants()
    account = Account.objects.get(pk=funded_user.pk)
    assert (account.reserved, account.used) == (0, log.cost)
    assert books_drift(user_ids=[funded_user.pk]) == []


def test_the_hold_covers_every_choice_a_request_asks_for(
    relay_url, catalog_model, openai_channel, fake_upstream
):
    # Given $1: one answer of up to 10,000 tokens (60,000 micro-USD at this model's
    # price) fits many times over, fifty of them (3,000,000) do not
    user = UserFactory()
    account_credit(user_id=user.pk, amount=1_000_000, idempotency_key="test:choices")
    _token, key = token_create(user=user, name="choices")
    request = {
        "model": catalog_model.name,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 10_000,
    }

    def send(**extra):
        return httpx.post(
            f"{relay_url}/chat/completions",
            json={**request, **extra},
            headers={"authorization": f"Bearer {key}"},
            timeout=10,
        )

    # When it asks for fifty choices (n, or best_of on a legacy completion), it is
    # refused before anything reaches the upstream, and nothing is charged
    for extra in ({"n": 50}, {"best_of": 50}, {"n": 2, "best_of": 50}):
        refused = send(**extra)
        assert refused.status_code == 402, extra
        assert refused.json()["error"]["code"] == "insufficient_quota"
    assert fake_upstream.app.stats.requests == 0
    assert Account.objects.get(pk=user.pk).balance == 1_000_000

    # And a request it can pay for is answered and charged
    assert send(n=2).status_code == 200
    wait_for_logs(1)
    assert Account.objects.get(pk=user.pk).balance < 1_000_000
    assert books_drift() == []
