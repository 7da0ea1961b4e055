"""When Redis does not answer: a stalled or unreachable Redis, the pool of connections
used up, a release lost. The relay answers 503 with Retry-After in OpenAI's shape, never
a 500, and never admits without counting (relay/README.md, "When Redis does not answer")."""

import asyncio
import dataclasses
import socket
import threading
import time

import httpx
import pytest
import redis
from django.conf import settings

from billing.models import Account
from logs.models import RequestLog
from relay import app as relay_app
from relay import limits
from relay.limits import Limiter, LimiterUnavailable, Limits

from .conftest import make_channel

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


class StalledRedis:
    """A server on loopback that accepts connections and never answers: Redis stalled
    (paused, swapping, a network that drops replies) as the relay sees it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                connection, _address = self.server.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.server.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def stalled_redis():
    server = StalledRedis()
    yield server
    server.close()


@pytest.fixture
def mock_channel(catalog_model):
    return make_channel("mock", "", kind="mock")


def _post(relay_url: str, key: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{relay_url}/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {key}", **headers},
        timeout=30,
    )


def _assert_busy(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    error = response.json()["error"]
    assert error["code"] == "service_unavailable"
    assert error["message"] == "Comet is busy right now. Retry in a few seconds."
    assert set(error) == {"message", "type", "param", "code"}


def test_a_stalled_redis_is_a_503_with_retry_after_within_the_wait(
    relay_url, token_key, mock_channel, funded_user, stalled_redis, monkeypatch
):
    # Given the limiter's Redis stalled (it accepts, never answers)
    monkeypatch.setattr(limits, "_limiter", Limiter(stalled_redis.url, 60, wait_seconds=0.3))

    # When a request comes
    started = time.monotonic()
    response = _post(relay_url, token_key)
    elapsed = time.monotonic() - started

    # Then it is refused with 503 once the wait is over, not a 500 nor a hang
    _assert_busy(response)
    assert elapsed < 3
    # And nothing was forwarded, logged or held
    assert RequestLog.objects.count() == 0
    assert Account.objects.get(pk=funded_user.pk).reserved == 0


def test_the_503_of_a_stalled_redis_speaks_chinese_when_asked(
    relay_url, token_key, mock_channel, stalled_redis, monkeypatch
):
    monkeypatch.setattr(limits, "_limiter", Limiter(stalled_redis.url, 60, wait_seconds=0.2))

    response = _post(relay_url, token_key, **{"accept-language": "zh-CN"})

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert "Comet" in response.json()["error"]["message"]
    assert "Retry" not in response.json()["error"]["message"]


def test_an_unreachable_redis_is_a_503(relay_url, token_key, mock_channel, monkeypatch):
    # Given nothing listening where the limiter's Redis should be
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    monkeypatch.setattr(
        limits, "_limiter", Limiter(f"redis://127.0.0.1:{port}/0", 60, wait_seconds=0.3)
    )

    _assert_busy(_post(relay_url, token_key))


def test_more_requests_than_connections_wait_for_one_instead_of_failing(
    relay_url, token_key, mock_channel, monkeypatch
):
    # Given a limiter allowed a single connection to the real Redis (the pool used up
    # by every burst)
    monkeypatch.setattr(
        limits, "_limiter", Limiter(settings.REDIS_URL, 60, max_connections=1, wait_seconds=5)
    )

    # When 30 requests come at once
    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{relay_url}/chat/completions",
                        json=CHAT,
                        headers={"authorization": f"Bearer {token_key}"},
                    )
                    for _ in range(30)
                )
            )
        return [response.status_code for response in responses]

    # Then every one is answered: they took turns on the connection
    assert asyncio.run(burst()) == [200] * 30


def test_a_pool_used_up_past_the_wait_is_a_503_for_each(
    relay_url, token_key, mock_channel, stalled_redis, monkeypatch
):
    # Given one connection to a stalled Redis: the first request holds it, the others
    # wait for it
    monkeypatch.setattr(
        limits,
        "_limiter",
        Limiter(stalled_redis.url, 60, max_connections=1, wait_seconds=0.3),
    )

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{relay_url}/chat/completions",
                        json=CHAT,
                        headers={"authorization": f"Bearer {token_key}"},
                    )
                    for _ in range(5)
                )
            )

    for response in asyncio.run(burst()):
        _assert_busy(response)


def test_a_redis_failure_of_the_shared_cache_is_a_503(
    relay_url, token_key, mock_channel, monkeypatch
):
    # Given the token lookup's cache failing (Redis down under the relay)
    async def failing(_raw_key):
        raise redis.exceptions.ConnectionError("Connection refused")

    monkeypatch.setattr(relay_app, "atoken_authenticate", failing)

    _assert_busy(_post(relay_url, token_key))


def test_the_limiter_raises_unavailable_and_never_admits_without_redis(stalled_redis):
    limiter = Limiter(stalled_redis.url, 60, wait_seconds=0.2)

    async def scenario() -> None:
        with pytest.raises(LimiterUnavailable):
            await limiter.acquire(token_id=1, user_id=1, limits=Limits(10), tokens=5)
        await limiter.aclose()

    asyncio.run(scenario())


def test_a_lost_release_still_frees_the_slots_and_keeps_the_estimate(monkeypatch):
    # Given a request admitted with an estimate of 1,000 tokens on an account at 10,000 TPM
    monkeypatch.setattr(limits, "FREE_RETRY_SECONDS", (0.01, 0.01))
    limiter = Limiter(settings.REDIS_URL, 60)
    account = Limits(10, account_concurrency=10, account_tpm=10_000)

    async def scenario() -> tuple[int, int, int]:
        admission = await limiter.acquire(token_id=901, user_id=902, limits=account, tokens=1_000)
        assert admission.slot is not None
        # When Redis loses the release (its answer times out)
        loop = asyncio.get_running_loop()
        connection = limiter._connections[loop]

        async def lost(**_kwargs):
            raise redis.exceptions.TimeoutError("Timeout reading from socket")

        limiter._connections[loop] = dataclasses.replace(connection, release=lost)
        await limiter.release(admission.slot, tokens_used=10)  # does not raise
        in_flight_right_after = await limiter.slots_in_use(901)
        await asyncio.sleep(0.2)
        # Then the slots are freed by the retry, and the estimate is still counted
        # (the correction is not retried: it could count twice)
        in_flight_later = await limiter.slots_in_use(901)
        after = await limiter.acquire(token_id=901, user_id=902, limits=account, tokens=0)
        await limiter.aclose()
        return in_flight_right_after, in_flight_later, after.state.tpm_remaining

    right_after, later, remaining = asyncio.run(scenario())
    assert right_after == 1
    assert later == 0
    assert remaining == 9_000
