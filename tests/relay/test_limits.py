"""Concurrency slots and the RPM window: through HTTP, after disconnects, after a crash."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest
import redis
from django.conf import settings

from accounts.models import Token
from billing.models import Account
from relay.limits import Limiter, LimitOutcome, Limits, account_slots_key, rpm_key, slots_key
from tests.settings_module import settings_environment
from tokens.services import token_create

from .conftest import MODEL, free_port, make_channel, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


def _slots(token_id: int) -> int:
    """Return the slots held in Redis, expired leases not counted."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    now_ms = int(time.time() * 1000)
    return client.zcount(slots_key(token_id), now_ms, "+inf")


def _wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.slow
def test_500_parallel_requests_never_exceed_100_in_flight(
    relay_url, token_key, catalog_model, fake_upstream, funded_user, return_grants
):
    # Given a token with the default limit of 100, and an upstream that takes 500 ms
    # (served from this process: a loaded machine may take seconds to accept a
    # connection, which is not what this test is about)
    make_channel("slow", f"{fake_upstream.url}/delay-500/v1", connect_timeout_seconds=60)
    token = Token.objects.get(user=funded_user)
    assert token.concurrency_limit == 100

    # When 500 requests arrive at once
    async def burst():
        limits = httpx.Limits(max_connections=600)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{relay_url}/chat/completions",
                        json=CHAT,
                        headers={"authorization": f"Bearer {token_key}"},
                    )
                    for _ in range(500)
                )
            )

    responses = asyncio.run(burst())

    # Then the upstream never saw more than 100 at a time; the others were told 429
    statuses = [response.status_code for response in responses]
    assert fake_upstream.app.stats.max_in_flight <= 100
    assert statuses.count(200) >= 100
    assert statuses.count(200) + statuses.count(429) == 500, Counter(statuses)
    assert statuses.count(429) > 0
    refused = next(response for response in responses if response.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert fake_upstream.app.stats.requests == statuses.count(200)
    # And every slot and every hold came back
    assert _slots(token.pk) == 0
    assert len(wait_for_logs(statuses.count(200), timeout=20)) == statuses.count(200)
    return_grants()
    _wait_until(lambda: Account.objects.get(pk=funded_user.pk).reserved == 0)


def test_a_client_that_disconnects_mid_stream_is_charged_and_frees_its_slot(
    relay_url, token_key, catalog_model, fake_upstream, funded_user, return_grants
):
    make_channel("dribbles", f"{fake_upstream.url}/chunk-delay-100/v1")
    token = Token.objects.get(user=funded_user)
    balance = Account.objects.get(pk=funded_user.pk).balance

    # When the client reads three events and hangs up
    with httpx.stream(
        "POST",
        f"{relay_url}/chat/completions",
        json={**CHAT, "stream": True},
        headers={"authorization": f"Bearer {token_key}"},
        timeout=30,
    ) as response:
        events = 0
        for line in response.iter_lines():
            events += line.startswith("data: ")
            if events == 3:
                assert _slots(token.pk) == 1
                break

    # Then its slot frees, the upstream is hung up on, and what was produced is charged
    _wait_until(lambda: _slots(token.pk) == 0)
    _wait_until(lambda: fake_upstream.app.stats.in_flight == 0)
    [log] = wait_for_logs(1)
    assert (log.status_code, log.error_code) == (499, "client_disconnected")
    assert log.usage_estimated is True
    assert 2 <= log.completion_tokens < 20  # the role event carries no text
    return_grants()
    account = Account.objects.get(pk=funded_user.pk)
    assert account.balance == balance - log.cost
    assert log.cost > 0
    assert account.reserved == 0


def test_slots_of_a_killed_relay_process_free_after_the_lease(
    token_key, catalog_model, fake_upstream, funded_user, relay_server, tmp_path
):
    # Given a relay in its own process, with a 2-second lease, holding 5 requests in flight
    make_channel("hangs", f"{fake_upstream.url}/hang/v1")
    token = Token.objects.get(user=funded_user)
    database = settings.DATABASES["default"]
    environment = {
        **os.environ,
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        **settings_environment(tmp_path, "comet.settings.test", RELAY_SLOT_LEASE_SECONDS=2),
    }
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "comet.asgi:application",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=environment,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until(lambda: _is_up(url), timeout=30)

        async def hold():
            async with httpx.AsyncClient(timeout=30) as client:
                tasks = [
                    asyncio.ensure_future(
                        client.post(
                            f"{url}/v1/chat/completions",
                            json=CHAT,
                            headers={"authorization": f"Bearer {token_key}"},
                        )
                    )
                    for _ in range(5)
                ]
                deadline = time.monotonic() + 10
                while _slots(token.pk) < 5 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                slots_before_kill = _slots(token.pk)
                # When the process is killed without a chance to clean up
                process.send_signal(signal.SIGKILL)
                process.wait()
                await asyncio.gather(*tasks, return_exceptions=True)
                return slots_before_kill

        assert asyncio.run(hold()) == 5
        # Then the dead process gave none of its slots back…
        assert redis.Redis.from_url(settings.REDIS_URL).zcard(slots_key(token.pk)) == 5
        # …and free once their lease has ended
        _wait_until(lambda: _slots(token.pk) == 0, timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _is_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/models", timeout=1).status_code == 401
    except httpx.HTTPError:
        return False


def test_leases_are_renewed_while_a_request_is_in_flight():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(slots_key(987), account_slots_key(987))

    async def scenario():
        limiter = Limiter(settings.REDIS_URL, lease_seconds=1)
        admission = await limiter.acquire(token_id=987, user_id=987, limits=Limits(1))
        outcome, slot = admission.outcome, admission.slot
        assert outcome is LimitOutcome.ACQUIRED
        first_end = client.zscore(slots_key(987), slot.member)
        # The renewer moves the lease's end on while the request is in flight
        deadline = time.monotonic() + 10
        while client.zscore(slots_key(987), slot.member) == first_end:
            assert time.monotonic() < deadline, "the lease was not renewed"
            await asyncio.sleep(0.05)
        renewed_end = client.zscore(slots_key(987), slot.member)
        # …so the slot is held when the first lease would have ended.
        held = await limiter.slots_in_use(987, now_ms=int(first_end))
        refused = (
            await limiter.acquire(
                token_id=987, user_id=987, limits=Limits(1), now_ms=int(first_end)
            )
        ).outcome
        await limiter.release(slot)
        after = await limiter.slots_in_use(987)
        await limiter.aclose()
        return renewed_end > first_end, held, refused, after

    assert asyncio.run(scenario()) == (True, 1, LimitOutcome.CONCURRENCY_EXCEEDED, 0)


SECOND_MS = 1000


@pytest.mark.parametrize("redis_url", ["redis", ""], ids=["redis", "in process"])
def test_the_rpm_window_slides(redis_url):
    # Given a token allowed 2 requests a minute, on a clock the test sets
    url = settings.REDIS_URL if redis_url else ""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(slots_key(654), rpm_key(654), account_slots_key(654))
    start = 5_000_000 * SECOND_MS

    async def scenario():
        limiter = Limiter(url, lease_seconds=60)
        outcomes = []
        for second in (0, 30, 59, 60, 61, 89, 90, 121):
            admission = await limiter.acquire(
                token_id=654,
                user_id=654,
                limits=Limits(10, token_rpm=2),
                now_ms=start + second * SECOND_MS,
            )
            outcome, slot = admission.outcome, admission.slot
            outcomes.append((second, outcome.name))
            if slot:
                await limiter.release(slot)
        await limiter.aclose()
        return outcomes

    # Then a request is refused while two were accepted in the minute before it, and
    # accepted again once the oldest of them is a full minute old
    assert asyncio.run(scenario()) == [
        (0, "ACQUIRED"),
        (30, "ACQUIRED"),
        (59, "RPM_EXCEEDED"),
        (60, "ACQUIRED"),
        (61, "RPM_EXCEEDED"),
        (89, "RPM_EXCEEDED"),
        (90, "ACQUIRED"),
        (121, "ACQUIRED"),
    ]
    if redis_url:
        # A refused request does not count: the window holds the two accepted last.
        window = client.zrange(rpm_key(654), 0, -1, withscores=True)
        assert [score for _member, score in window] == [
            start + 90 * SECOND_MS,
            start + 121 * SECOND_MS,
        ]


def test_without_redis_the_same_rules_hold_in_process():
    async def scenario():
        limiter = Limiter("", lease_seconds=60)
        first = await limiter.acquire(token_id=1, user_id=1, limits=Limits(1))
        second = await limiter.acquire(token_id=1, user_id=1, limits=Limits(1))
        await limiter.release(first.slot)
        third = await limiter.acquire(token_id=1, user_id=1, limits=Limits(1, token_rpm=1))
        fourth = await limiter.acquire(token_id=2, user_id=2, limits=Limits(5, token_rpm=1))
        fifth = await limiter.acquire(token_id=2, user_id=2, limits=Limits(5, token_rpm=1))
        return [admission.outcome for admission in (first, second, third, fourth, fifth)]

    assert asyncio.run(scenario()) == [
        LimitOutcome.ACQUIRED,
        LimitOutcome.CONCURRENCY_EXCEEDED,
        LimitOutcome.ACQUIRED,
        LimitOutcome.ACQUIRED,
        LimitOutcome.RPM_EXCEEDED,
    ]


def test_a_token_with_its_own_limit(relay_url, funded_user, catalog_model, fake_upstream):
    make_channel("slow", f"{fake_upstream.url}/delay-300/v1")
    _token, key = token_create(user=funded_user, name="two at a time", concurrency_limit=2)

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

    statuses = sorted(response.status_code for response in asyncio.run(burst()))
    assert statuses.count(200) >= 2
    assert fake_upstream.app.stats.max_in_flight <= 2
    assert statuses.count(429) >= 1


def test_ids_are_unique_and_differ_in_a_forked_child():
    from relay.ids import unique_id

    ids = {unique_id() for _ in range(1000)}
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(writer, unique_id().encode())
        os._exit(0)
    os.waitpid(child, 0)
    child_id = os.read(reader, 64).decode()
    assert len(ids) == 1000
    assert child_id[:16] != next(iter(ids))[:16]
