"""Lines and account limits in the relay: the models a line may call, account
concurrency, RPM and TPM at their boundaries, the headers OpenAI clients read."""

import asyncio
from decimal import Decimal

import httpx
import openai
import pytest
import redis
from django.conf import settings

from accounts.models import Token
from accounts.services import user_line_set
from billing.models import Account
from logs.models import RequestLog
from models_catalog.models import CatalogModel, PricingGroup, Vendor
from models_catalog.selectors import model_price
from models_catalog.services import catalog_entry_create
from relay import upstream
from relay.calls import hold_tokens, prompt_count
from relay.limits import (
    TPM_BUCKET_MS,
    Limiter,
    LimitOutcome,
    Limits,
    rate_headers,
    reset_text,
    tpm_key,
)
from tokens.services import token_create

from .conftest import MODEL, make_channel, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)

SECOND_MS = 1000
START = 7_000_000 * SECOND_MS
RATE_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


def _limiter(redis_url: str) -> Limiter:
    return Limiter(settings.REDIS_URL if redis_url else "", lease_seconds=60)


both_stores = pytest.mark.parametrize("redis_url", ["redis", ""], ids=["redis", "in process"])


# --- The limiter: one step per admission, at the boundaries ------------------------------


@both_stores
def test_account_rpm_admits_exactly_the_limit_across_tokens(redis_url):
    # Given an account allowed 3 requests a minute, used by two tokens without limits
    limits = Limits(10, account_concurrency=10, account_rpm=3)

    async def scenario():
        limiter = _limiter(redis_url)
        admissions = []
        for token_id, second in ((1, 0), (2, 10), (1, 20), (2, 30)):
            admission = await limiter.acquire(
                token_id=token_id, user_id=77, limits=limits, now_ms=START + second * SECOND_MS
            )
            admissions.append(admission)
            if admission.slot:
                await limiter.release(admission.slot)
        # The first request is a full minute old at 60 s: one more is admitted then.
        later = await limiter.acquire(
            token_id=2, user_id=77, limits=limits, now_ms=START + 60 * SECOND_MS
        )
        await limiter.aclose()
        return admissions, later

    admissions, later = asyncio.run(scenario())

    # Then the third is admitted with nothing left, the fourth refused until 60 s
    assert [a.outcome for a in admissions] == [
        LimitOutcome.ACQUIRED,
        LimitOutcome.ACQUIRED,
        LimitOutcome.ACQUIRED,
        LimitOutcome.ACCOUNT_RPM_EXCEEDED,
    ]
    assert [a.state.rpm_remaining for a in admissions[:3]] == [2, 1, 0]
    refused = admissions[3].state
    assert (refused.rpm_limit, refused.rpm_remaining) == (3, 0)
    assert refused.retry_ms == 30 * SECOND_MS  # the first leaves at 60 s; it is 30 s
    assert later.outcome is LimitOutcome.ACQUIRED


@both_stores
def test_account_concurrency_is_shared_by_its_tokens(redis_url):
    limits = Limits(5, account_concurrency=2)

    async def scenario():
        limiter = _limiter(redis_url)
        first = await limiter.acquire(token_id=1, user_id=5, limits=limits, now_ms=START)
        second = await limiter.acquire(token_id=2, user_id=5, limits=limits, now_ms=START)
        third = await limiter.acquire(token_id=3, user_id=5, limits=limits, now_ms=START)
        other_account = await limiter.acquire(token_id=4, user_id=6, limits=limits, now_ms=START)
        await limiter.release(first.slot)
        fourth = await limiter.acquire(token_id=3, user_id=5, limits=limits, now_ms=START)
        await limiter.aclose()
        return [a.outcome for a in (first, second, third, other_account, fourth)]

    assert asyncio.run(scenario()) == [
        LimitOutcome.ACQUIRED,
        LimitOutcome.ACQUIRED,
        LimitOutcome.ACCOUNT_CONCURRENCY_EXCEEDED,
        LimitOutcome.ACQUIRED,
        LimitOutcome.ACQUIRED,
    ]


@both_stores
def test_tpm_admits_on_the_estimate_and_counts_the_actual_usage(redis_url):
    # Given an account allowed 10,000 tokens a minute
    limits = Limits(100, account_concurrency=100, account_tpm=10_000)

    async def scenario():
        limiter = _limiter(redis_url)

        async def take(tokens, second):
            return await limiter.acquire(
                token_id=1,
                user_id=9,
                limits=limits,
                tokens=tokens,
                now_ms=START + int(second * SECOND_MS),
            )

        steps = {}
        steps["big"] = await take(6_000, 0)
        steps["rest"] = await take(4_000, 1)  # exactly at the limit
        steps["one over"] = await take(1, 2)
        # When the big one settles having used 1,000 tokens, not its 6,000 estimate
        await limiter.release(steps["big"].slot, tokens_used=1_000, now_ms=START + 3 * SECOND_MS)
        steps["after correction"] = await take(5_000, 3)
        steps["one over again"] = await take(1, 4)
        # Then the estimate of a refused request was counted nowhere, and at 60 s the
        # first request's tokens have left the window
        await limiter.release(steps["rest"].slot, tokens_used=4_000, now_ms=START + 5 * SECOND_MS)
        steps["at 60 s"] = await take(1_000, 60)
        steps["too large"] = await take(10_001, 70)
        await limiter.aclose()
        return steps

    steps = asyncio.run(scenario())

    outcomes = {name: admission.outcome for name, admission in steps.items()}
    assert outcomes == {
        "big": LimitOutcome.ACQUIRED,
        "rest": LimitOutcome.ACQUIRED,
        "one over": LimitOutcome.TPM_EXCEEDED,
        "after correction": LimitOutcome.ACQUIRED,
        "one over again": LimitOutcome.TPM_EXCEEDED,
        "at 60 s": LimitOutcome.ACQUIRED,
        "too large": LimitOutcome.TPM_REQUEST_TOO_LARGE,
    }
    assert steps["rest"].state.tpm_remaining == 0
    refused = steps["one over"].state
    assert (refused.tpm_limit, refused.tpm_remaining) == (10_000, 0)
    # The 6,000 of second 0 leave at 60 s: the request may come back in 58 s
    assert refused.retry_ms == 58 * SECOND_MS
    assert steps["after correction"].state.tpm_remaining == 0
    # At 60 s: 1,000 (second 0) has left; 4,000 + 5,000 remain, plus this 1,000
    assert steps["at 60 s"].state.tpm_remaining == 0


def test_tpm_window_in_redis_holds_the_actual_usage_to_the_token():
    # The running total the script keeps equals the sum of its buckets after corrections
    client = redis.Redis.from_url(settings.REDIS_URL)
    limits = Limits(100, account_concurrency=100, account_tpm=1_000_000)

    async def scenario():
        limiter = _limiter("redis")
        slots = []
        for index in range(50):
            admission = await limiter.acquire(
                token_id=1, user_id=11, limits=limits, tokens=3_000, now_ms=START + index * 37
            )
            slots.append(admission.slot)
        for index, slot in enumerate(slots):
            await limiter.release(slot, tokens_used=index * 10, now_ms=START + 5_000)
        await limiter.aclose()

    asyncio.run(scenario())

    window = {key.decode(): int(value) for key, value in client.hgetall(tpm_key(11)).items()}
    buckets = {key: value for key, value in window.items() if key.isdigit()}
    assert window["t"] == sum(index * 10 for index in range(50))
    assert sum(buckets.values()) == window["t"]
    assert len(buckets) == len({(START + index * 37) // TPM_BUCKET_MS for index in range(50)})


def test_the_headers_are_openais():
    from relay.limits import RateState

    state = RateState(
        rpm_limit=60,
        rpm_remaining=0,
        rpm_reset_ms=59_900,
        tpm_limit=30_000_000,
        tpm_remaining=-5,
        tpm_reset_ms=360_000,
        retry_ms=1_500,
    )

    headers = {name.decode(): value.decode() for name, value in rate_headers(state, refused=True)}

    assert headers == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "59.9s",
        "x-ratelimit-limit-tokens": "30000000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "6m0s",
        "retry-after": "2",
        "retry-after-ms": "1500",
    }
    assert reset_text(20) == "20ms"
    assert rate_headers(RateState()) == []


# --- Through HTTP ----------------------------------------------------------------------


CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


def _post(relay_url, key, body=CHAT):
    return httpx.post(
        f"{relay_url}/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_account_limits_at_the_boundary_with_the_headers(
    relay_url, funded_user, catalog_model, openai_channel, fake_upstream, return_grants
):
    # Given an account granted 2 requests and 100,000 tokens a minute, and two tokens
    user_line_set(
        user=funded_user,
        pricing_group_id=None,
        concurrency_limit=None,
        rpm_limit=2,
        tpm_limit=100_000,
        actor=None,
    )
    _first, first_key = token_create(user=funded_user, name="one")
    _second, second_key = token_create(user=funded_user, name="two")

    # When each token sends one request, then the first sends another
    answered = [_post(relay_url, first_key), _post(relay_url, second_key)]
    assert len(wait_for_logs(2)) == 2
    return_grants()
    balance = Account.objects.get(pk=funded_user.pk).balance
    refused = _post(relay_url, first_key)

    # Then the two are answered, saying what is left, and the third is refused
    assert [response.status_code for response in answered] == [200, 200]
    assert answered[0].headers["x-ratelimit-remaining-requests"] == "1"
    assert answered[1].headers["x-ratelimit-remaining-requests"] == "0"
    assert answered[1].headers["x-ratelimit-limit-tokens"] == "100000"
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "account" in refused.json()["error"]["message"]
    for header in RATE_HEADERS:
        assert header in refused.headers
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # And nothing of the refused request reached the upstream or the books
    assert fake_upstream.app.stats.requests == 2
    return_grants()
    assert Account.objects.get(pk=funded_user.pk).balance == balance
    assert RequestLog.objects.count() == 2


def test_tpm_through_the_relay_counts_what_the_answer_used(
    relay_url, funded_user, catalog_model, openai_channel, fake_upstream, return_grants
):
    # Given an account allowed few tokens a minute
    body = {**CHAT, "max_tokens": 500}
    price = model_price(model_name=MODEL, pricing_group_id=None)
    estimate = sum(
        hold_tokens(
            prompt_tokens=prompt_count(body=body, endpoint=upstream.CHAT, price=price),
            body=body,
            price=price,
            has_completion=True,
        )
    )
    user_line_set(
        user=funded_user,
        pricing_group_id=None,
        concurrency_limit=None,
        rpm_limit=None,
        tpm_limit=estimate * 2,
        actor=None,
    )
    _token, key = token_create(user=funded_user, name="tpm")
    client = redis.Redis.from_url(settings.REDIS_URL)

    # When one request is answered
    first = _post(relay_url, key, body)
    [log] = wait_for_logs(1)

    # Then it was admitted on its estimate and the window now holds what it used
    assert first.status_code == 200
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == estimate
    used = log.prompt_tokens + log.completion_tokens
    assert used < estimate
    assert int(client.hget(tpm_key(funded_user.pk), "t")) == used
    # And a second and third fit; a request asking for more than the minute allows is
    # refused without Retry-After: no wait would help
    assert _post(relay_url, key, body).status_code == 200
    huge = _post(relay_url, key, {**CHAT, "max_tokens": estimate * 3})
    assert huge.status_code == 429
    assert "retry-after" not in huge.headers
    assert huge.headers["x-ratelimit-limit-tokens"] == str(estimate * 2)
    assert fake_upstream.app.stats.requests == 2


def test_a_token_gets_the_lower_of_its_own_and_its_accounts_concurrency(
    relay_url, funded_user, catalog_model, fake_upstream
):
    # Given an account allowed 2 in flight and a token that kept 100 from before
    make_channel("slow", f"{fake_upstream.url}/delay-300/v1")
    _token, key = token_create(user=funded_user, name="old")
    user_line_set(
        user=funded_user,
        pricing_group_id=None,
        concurrency_limit=2,
        rpm_limit=None,
        tpm_limit=None,
        actor=None,
    )
    assert Token.objects.get(user=funded_user).concurrency_limit == 100

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{relay_url}/chat/completions",
                        json=CHAT,
                        headers={"authorization": f"Bearer {key}"},
                    )
                    for _ in range(6)
                )
            )

    statuses = [response.status_code for response in asyncio.run(burst())]

    assert fake_upstream.app.stats.max_in_flight <= 2
    assert statuses.count(200) >= 2
    assert statuses.count(429) >= 1


@pytest.fixture
def training_line(catalog_model):
    """A line that may call only MODEL; another enabled model exists outside it."""
    vendor = Vendor.objects.get(name="testvendor")
    catalog_entry_create(entry=CatalogModel(name="gpt-outside", vendor=vendor, model_ratio=1))
    line = PricingGroup(
        name="training",
        display_name="Training",
        group_ratio=Decimal("0.8"),
        allows_all_models=False,
        concurrency_limit=500,
    )
    catalog_entry_create(entry=line)
    line.catalog_models.set([catalog_model])
    return line


def test_a_model_outside_the_line_is_not_found_through_the_sdk(
    relay_url, funded_user, training_line, fake_upstream, return_grants
):
    # Given a customer on the training line, and a channel serving both models
    make_channel("both", f"{fake_upstream.url}/v1", served_models=[MODEL, "gpt-outside"])
    user_line_set(
        user=funded_user,
        pricing_group_id=training_line.pk,
        concurrency_limit=None,
        rpm_limit=None,
        tpm_limit=None,
        actor=None,
    )
    _token, key = token_create(user=funded_user, name="sdk")
    client = openai.OpenAI(base_url=relay_url, api_key=key, max_retries=0)
    balance = Account.objects.get(pk=funded_user.pk).balance

    # When the SDK lists the models and calls one outside the line
    listed = [model.id for model in client.models.list()]
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(
            model="gpt-outside", messages=[{"role": "user", "content": "hi"}]
        )
    return_grants()
    balance_after_refusal = Account.objects.get(pk=funded_user.pk).balance
    inside = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )

    # Then only the line's model is listed, the other is 404 model_not_found, saying how
    # to get it, and nothing was forwarded or charged for it
    assert listed == [MODEL]
    assert raised.value.code == "model_not_found"
    assert "Contact support" in raised.value.message
    assert inside.choices
    [log] = wait_for_logs(1)
    assert log.model == MODEL
    assert log.group_ratio == Decimal("0.8")
    assert fake_upstream.app.stats.requests == 1
    assert balance_after_refusal == balance


def test_a_line_granted_is_seen_by_the_relay(relay_url, funded_user, training_line, openai_channel):
    # Given a token used on the default line, where every model is listed
    _token, key = token_create(user=funded_user, name="moves")
    client = openai.OpenAI(base_url=relay_url, api_key=key, max_retries=0)
    assert sorted(model.id for model in client.models.list()) == ["gpt-outside", MODEL]

    # When an admin grants the training line
    user_line_set(
        user=funded_user,
        pricing_group_id=training_line.pk,
        concurrency_limit=None,
        rpm_limit=None,
        tpm_limit=None,
        actor=None,
    )

    # Then the relay lists the training line's models (its memory lasts 0.5 s)
    import time

    deadline = time.monotonic() + 5
    while [model.id for model in client.models.list()] != [MODEL]:
        assert time.monotonic() < deadline, "the new line was not seen"
        time.sleep(0.1)


@pytest.mark.django_db
def test_without_a_default_group_the_profile_and_pricing_show_the_default_line(user_client):
    """The default group is made by a migration, but an admin may delete it (or a test
    flush it): the pages then price at ratio 1 with no limits, as the relay does."""
    PricingGroup.objects.all().delete()

    profile = user_client.get("/profile/")
    pricing = user_client.get("/pricing")

    assert profile.status_code == 200
    assert "Default" in profile.content.decode()
    assert pricing.status_code == 200
