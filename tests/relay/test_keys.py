"""A channel's several upstream keys: used in turn, a refused one set aside and the
request answered by the next key (then the next channel), charged once."""

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from billing.models import Account
from relay import keys
from relay.keys import (
    KEY_RATE_LIMITED_SECONDS,
    KEY_REFUSED_SECONDS,
    retry_after_seconds,
    set_aside_seconds,
)
from relay.models import Channel
from relay.routing import routing_table_expire
from tests.clock import FakeClock

from .conftest import MODEL, make_channel, wait_for_logs

KEY_A = "sk-first-key-aaaa"
KEY_B = "sk-second-key-bbbb"
KEY_C = "sk-third-key-cccc"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def _post(relay_url, token_key):
    return httpx.post(
        f"{relay_url}/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {token_key}"},
        timeout=30,
    )


def _seen(fake_upstream) -> dict[str, int]:
    return {
        key.removeprefix("Bearer "): count
        for key, count in fake_upstream.app.stats.authorizations.items()
    }


def _wait_for_failures(channel, count):
    deadline = time.monotonic() + 5
    while Channel.objects.get(pk=channel.pk).consecutive_failures != count:
        assert time.monotonic() < deadline, "the failure was not recorded"
        time.sleep(0.02)
    return Channel.objects.get(pk=channel.pk)


@pytest.fixture
def key_clock(monkeypatch):
    """The clock keys are set aside on, standing still until the test moves it."""
    clock = FakeClock(1000.0)
    monkeypatch.setattr(keys, "clock", clock)
    return clock


# --- Pure rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "quota", "seconds"),
    [
        (401, None, False, KEY_REFUSED_SECONDS),
        (403, 5.0, False, KEY_REFUSED_SECONDS),
        (429, None, False, KEY_RATE_LIMITED_SECONDS),
        (429, 7.0, False, 7.0),
        (429, 10**9, False, KEY_REFUSED_SECONDS),
        (429, None, True, KEY_REFUSED_SECONDS),
        (500, None, False, None),
        (400, None, False, None),
        (502, 3.0, False, None),
    ],
)
def test_how_long_a_key_is_set_aside_depends_on_what_the_upstream_said(
    status, retry_after, quota, seconds
):
    assert set_aside_seconds(status, retry_after=retry_after, is_quota_exhausted=quota) == seconds


def test_retry_after_is_read_in_milliseconds_seconds_or_as_a_date():
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)

    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "9"}) == 9.0
    assert 110 < retry_after_seconds({"retry-after": later}) <= 120
    assert retry_after_seconds({"retry-after": "-3"}) == 0.0
    for unreadable in ("soon", "nan", "inf", "1e999", ""):
        assert retry_after_seconds({"retry-after": unreadable}) is None
    assert retry_after_seconds({"retry-after-ms": "x"}) is None
    assert retry_after_seconds({}) is None


# --- Through the relay --------------------------------------------------------------

relay_test = pytest.mark.django_db(transaction=True)


@relay_test
def test_keys_are_used_in_turn(relay_url, token_key, catalog_model, fake_upstream):
    # Given a channel of three keys
    make_channel("keys", f"{fake_upstream.url}/v1", api_keys=[KEY_B, KEY_C])

    # When six requests come
    for _ in range(6):
        assert _post(relay_url, token_key).status_code == 200

    # Then each key was sent twice
    from .conftest import UPSTREAM_KEY

    assert _seen(fake_upstream) == {UPSTREAM_KEY: 2, KEY_B: 2, KEY_C: 2}


@relay_test
@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_set_aside_and_the_next_key_answers_with_one_charge(
    status, relay_url, token_key, catalog_model, fake_upstream, funded_user, return_grants
):
    # Given a channel whose first key the upstream refuses
    fake_upstream.app.key_answers[KEY_A] = (status, {})
    channel = make_channel("keys", f"{fake_upstream.url}/v1", api_key="", api_keys=[KEY_A, KEY_B])
    balance = Account.objects.get(pk=funded_user.pk).balance

    # When three requests come
    responses = [_post(relay_url, token_key) for _ in range(3)]

    # Then each is answered; the refused key was asked once, then left out
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert _seen(fake_upstream) == {KEY_A: 1, KEY_B: 3}
    logs = wait_for_logs(3)
    assert len(logs) == 3
    assert {log.channel_id for log in logs} == {channel.pk}
    assert all(log.cost > 0 and log.status_code == 200 for log in logs)
    # One charge per request, and the channel is not counted as failing
    return_grants()
    account = Account.objects.get(pk=funded_user.pk)
    assert account.balance == balance - sum(log.cost for log in logs)
    assert account.reserved == 0
    assert Channel.objects.get(pk=channel.pk).consecutive_failures == 0


@relay_test
def test_a_rate_limited_key_comes_back_after_its_retry_after(
    relay_url, token_key, catalog_model, fake_upstream, key_clock
):
    # Given a channel whose first key is rate limited for 7 s
    fake_upstream.app.key_answers[KEY_A] = (429, {"retry-after": "7"})
    make_channel("keys", f"{fake_upstream.url}/v1", api_key="", api_keys=[KEY_A, KEY_B])

    # When requests come within the 7 s
    assert _post(relay_url, token_key).status_code == 200
    assert _post(relay_url, token_key).status_code == 200
    key_clock.advance(6.9)
    assert _post(relay_url, token_key).status_code == 200

    # Then the second key answered them, the first asked once
    assert _seen(fake_upstream) == {KEY_A: 1, KEY_B: 3}

    # And once the 7 s are over (and the upstream lets it), the first key is used again
    del fake_upstream.app.key_answers[KEY_A]
    key_clock.advance(0.1)
    for _ in range(2):
        assert _post(relay_url, token_key).status_code == 200
    assert _seen(fake_upstream) == {KEY_A: 2, KEY_B: 4}


@relay_test
def test_a_key_out_of_quota_is_set_aside_for_long(
    relay_url, token_key, catalog_model, fake_upstream, key_clock
):
    fake_upstream.app.key_answers[KEY_A] = (429, {"x-fake-code": "quota", "retry-after": "1"})
    make_channel("keys", f"{fake_upstream.url}/v1", api_key="", api_keys=[KEY_A, KEY_B])

    assert _post(relay_url, token_key).status_code == 200
    key_clock.advance(KEY_REFUSED_SECONDS - 1)
    assert _post(relay_url, token_key).status_code == 200
    assert _post(relay_url, token_key).status_code == 200

    assert _seen(fake_upstream) == {KEY_A: 1, KEY_B: 3}


@relay_test
def test_when_every_key_is_refused_the_next_channel_answers(
    relay_url, token_key, catalog_model, fake_upstream, funded_user, return_grants
):
    # Given a preferred channel whose two keys are both refused, and a fallback channel
    fake_upstream.app.key_answers[KEY_A] = (401, {})
    fake_upstream.app.key_answers[KEY_B] = (429, {})
    preferred = make_channel(
        "preferred", f"{fake_upstream.url}/v1", priority=10, api_key="", api_keys=[KEY_A, KEY_B]
    )
    fallback = make_channel("fallback", f"{fake_upstream.url}/v1", api_key="", api_keys=[KEY_C])
    balance = Account.objects.get(pk=funded_user.pk).balance

    # When a request comes, then another
    first = _post(relay_url, token_key)
    preferred_row = _wait_for_failures(preferred, 1)
    second = _post(relay_url, token_key)

    # Then the fallback answered both, and each request was charged once
    assert (first.status_code, second.status_code) == (200, 200)
    logs = wait_for_logs(2)
    assert [log.channel_id for log in logs] == [fallback.pk, fallback.pk]
    return_grants()
    assert Account.objects.get(pk=funded_user.pk).balance == balance - sum(log.cost for log in logs)
    # Both refused keys were asked once; the second request skipped the channel as failed
    assert _seen(fake_upstream) == {KEY_A: 1, KEY_B: 1, KEY_C: 2}
    assert preferred_row.last_error == "HTTP 429"
    assert _wait_for_failures(preferred, 2).last_error == "every key set aside"


@relay_test
def test_saving_the_channel_gives_its_set_aside_keys_back(
    relay_url, token_key, catalog_model, fake_upstream
):
    # Given a key set aside after a 401
    fake_upstream.app.key_answers[KEY_A] = (401, {})
    channel = make_channel("keys", f"{fake_upstream.url}/v1", api_key="", api_keys=[KEY_A, KEY_B])
    assert _post(relay_url, token_key).status_code == 200
    assert _post(relay_url, token_key).status_code == 200
    assert _seen(fake_upstream) == {KEY_A: 1, KEY_B: 2}

    # When an admin saves the channel (the upstream account was fixed meanwhile)
    del fake_upstream.app.key_answers[KEY_A]
    time.sleep(0.01)
    Channel.objects.get(pk=channel.pk).save()
    routing_table_expire()

    # Then the key is in turn again at once
    for _ in range(2):
        assert _post(relay_url, token_key).status_code == 200
    assert _seen(fake_upstream)[KEY_A] == 2


@relay_test
def test_a_refused_key_is_logged_by_its_ending_only(
    relay_url, token_key, catalog_model, fake_upstream, caplog
):
    fake_upstream.app.key_answers[KEY_A] = (401, {})
    make_channel("keys", f"{fake_upstream.url}/v1", api_key="", api_keys=[KEY_A, KEY_B])

    with caplog.at_level("WARNING", logger="relay"):
        assert _post(relay_url, token_key).status_code == 200

    [line] = [
        record.getMessage() for record in caplog.records if "set aside" in record.getMessage()
    ]
    assert line == "Channel keys: key 1 of 2 (…aaaa) set aside for 3600 s after HTTP 401"
    assert KEY_A not in caplog.text
    assert KEY_B not in caplog.text
