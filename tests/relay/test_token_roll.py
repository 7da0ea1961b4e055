"""Rolling a key through the relay: the new key works at once, the old one is refused
within a second, and neither the roll nor the refusals move any money."""

import time

import openai
import pytest
from django.test import Client

from accounts.models import Token
from billing.models import Account, LedgerEntry
from logs.models import RequestLog
from tests.tokens.test_roll_and_nonce import _signed_in_now
from tokens.services import token_create

from .conftest import MODEL, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)

# The promise, as for a disabled or deleted token: refused by every process within a second.
REFUSED_WITHIN_SECONDS = 1.0


def _client(relay_url, key):
    return openai.OpenAI(base_url=relay_url, api_key=key, max_retries=0)


def _ask(relay_url, key):
    return _client(relay_url, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=20
    )


def _books(user) -> tuple:
    account = Account.objects.get(pk=user.pk)
    token = Token.objects.get(user=user)
    return (
        account.balance,
        account.reserved,
        account.used,
        account.request_count,
        LedgerEntry.objects.filter(account=account).count(),
        token.used,
        token.quota_remaining,
        token.request_count,
        RequestLog.objects.filter(user=user).count(),
    )


@pytest.mark.parametrize("surface", ["console", "api"])
def test_a_rolled_key_works_and_the_old_one_is_refused_within_a_second(
    relay_url, openai_channel, funded_user, return_grants, surface
):
    token, old_key = token_create(user=funded_user, name="app", quota_remaining=50_000_000)
    # In use: the old key is cached by the relay (Redis and process memory).
    assert _ask(relay_url, old_key).choices[0].message.content
    wait_for_logs(1)
    return_grants()
    books = _books(funded_user)

    browser = Client()
    browser.force_login(funded_user)
    _signed_in_now(browser, funded_user)
    if surface == "console":
        page = browser.get(f"/tokens/{token.pk}/roll/").content.decode()
        nonce = page.split('name="form_nonce" value="', 1)[1].split('"', 1)[0]
        response = browser.post(f"/tokens/{token.pk}/roll/", {"form_nonce": nonce})
        assert response.status_code == 200
        html = response.content.decode()
        new_key = html.split('id="new-key"', 1)[1].split('value="', 1)[1].split('"', 1)[0]
    else:
        response = browser.post(f"/api/tokens/{token.pk}/roll/")
        assert response.status_code == 200
        new_key = response.json()["key"]
    rolled_at = time.monotonic()
    # Rolling moves no money and keeps the token's usage.
    assert _books(funded_user) == books

    # The old key: refused by the relay within the promise's second, every time after.
    statuses = []
    while time.monotonic() < rolled_at + REFUSED_WITHIN_SECONDS + 0.3:
        try:
            _client(relay_url, old_key).models.list()
            statuses.append((time.monotonic(), 200))
        except openai.AuthenticationError:
            statuses.append((time.monotonic(), 401))
        time.sleep(0.05)
    late = [status for at, status in statuses if at > rolled_at + REFUSED_WITHIN_SECONDS]
    assert late, "no request was sent after the promise's second"
    assert set(late) == {401}, late
    with pytest.raises(openai.AuthenticationError):
        _ask(relay_url, old_key)
    return_grants()
    # Refusals charge nothing and log nothing.
    assert _books(funded_user) == books

    # The new key: the same token, its quota and usage carried on.
    answer = _ask(relay_url, new_key)
    assert answer.choices[0].message.content
    [_first, second] = wait_for_logs(2)
    assert second.token_id == token.pk
    return_grants()
    token.refresh_from_db()
    assert token.request_count == 2
    account = Account.objects.get(pk=funded_user.pk)
    assert account.balance == books[0] - second.cost
