"""Refusals: a clear 4xx in OpenAI's error shape, nothing charged, nothing forwarded."""

import json
from datetime import timedelta
from io import StringIO

import httpx
import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Token
from accounts.tokens import token_authenticate
from billing.models import Account, Reservation
from logs.models import RequestLog
from relay.memo import LOCAL_CACHE_SECONDS
from tokens.services import token_create

from .conftest import MODEL

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def refused(relay_url, token_key, openai_channel, fake_upstream, funded_user):
    """Send a request; return the response after checking that nothing was charged or sent."""
    balance = Account.objects.get(pk=funded_user.pk).balance
    reservations = list(Reservation.objects.values_list("request_id", "amount", "status"))

    def send(path="/chat/completions", *, method="POST", key=token_key, headers=None, **kwargs):
        all_headers = {"authorization": f"Bearer {key}", **(headers or {})}
        response = httpx.request(
            method, f"{relay_url}{path}", headers=all_headers, timeout=10, **kwargs
        )
        body = response.json()
        assert set(body["error"]) >= {"message", "type", "param", "code"}
        assert body["error"]["message"]
        assert fake_upstream.app.stats.requests == 0
        assert RequestLog.objects.count() == 0
        account = Account.objects.get(pk=funded_user.pk)
        assert (account.balance, account.reserved) == (balance, 0)
        assert list(Reservation.objects.values_list("request_id", "amount", "status")) == (
            reservations
        )
        return response.status_code, body["error"]

    return send


def test_malformed_json(refused):
    status, error = refused(content=b"{not json", headers={"content-type": "application/json"})
    assert (status, error["code"]) == (400, "invalid_json")


def test_a_json_array_is_not_a_request(refused):
    status, error = refused(json=[1, 2])
    assert (status, error["code"]) == (400, "invalid_json")


def test_a_json_body_that_is_not_an_object_is_a_400(refused):
    for content in (b'"chat"', b"1", b"null", b"true"):
        status, error = refused(content=content, headers={"content-type": "application/json"})
        assert (status, error["code"]) == (400, "invalid_json"), content


def test_invalid_utf8_is_a_400(refused):
    content = b'{"model": "gpt-\xff", "messages": []}'
    status, error = refused(content=content, headers={"content-type": "application/json"})
    assert (status, error["code"], error["type"]) == (400, "invalid_json", "invalid_request_error")


def test_json_nested_too_deep_is_a_400(refused):
    for content in (
        b"[" * 100_000,
        b'{"model": "gpt-test", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        # Shallow enough for json.loads, too deep for code that walks the body after.
        b'{"model": "gpt-test", "messages": ' + b"[" * 900 + b"]" * 900 + b"}",
    ):
        status, error = refused(content=content, headers={"content-type": "application/json"})
        assert (status, error["code"], error["type"]) == (
            400,
            "invalid_json",
            "invalid_request_error",
        ), content[:40]


def test_a_model_name_no_database_can_hold_is_a_400(refused):
    for content in (
        json.dumps({**CHAT, "model": f"{MODEL}\x00"}).encode(),
        json.dumps({**CHAT, "model": "\x00"}).encode(),
        json.dumps({**CHAT, "model": "\ud800"}).encode(),
        json.dumps({**CHAT, "model": f"{MODEL}\udfff"}).encode(),
        # A surrogate encoded as UTF-8 bytes, which json.loads lets through.
        b'{"model": "gpt-test\xed\xa0\x80", "messages": []}',
    ):
        status, error = refused(content=content, headers={"content-type": "application/json"})
        assert (status, error["code"], error["param"]) == (400, "invalid_model", "model"), content


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
def test_a_max_tokens_that_is_not_a_positive_whole_number_is_a_400(refused, key):
    for value in (10**30, 2**63, 1_000_001, -1, 0, 1.5, 100.0, True, "100", [100], {"n": 1}):
        status, error = refused(json={**CHAT, key: value})
        assert (status, error["code"], error["param"]) == (400, "invalid_value", key), value
        assert error["type"] == "invalid_request_error"
    output = StringIO()
    call_command("reconcile", stdout=output)
    assert "no drift" in output.getvalue()


@pytest.mark.parametrize("key", ["n", "best_of"])
def test_a_number_of_choices_outside_1_to_128_is_a_400(refused, key):
    # Each choice is billed: an unbounded `n` would be an unbounded hold.
    for value in (0, -1, 129, 1000, 10**30, 1.5, True, "2", "two"):
        status, error = refused(json={**CHAT, key: value})
        assert (status, error["code"], error["param"]) == (400, "invalid_value", key), value
        assert "128" in error["message"]


def test_a_null_max_tokens_is_the_default(relay_url, token_key, openai_channel):
    response = httpx.post(
        f"{relay_url}/chat/completions",
        json={**CHAT, "max_tokens": None},
        headers={"authorization": f"Bearer {token_key}"},
        timeout=10,
    )
    assert response.status_code == 200


def test_missing_model(refused):
    status, error = refused(json={"messages": []})
    assert (status, error["code"], error["param"]) == (400, "missing_model", "model")


def test_oversized_body(refused, monkeypatch):
    monkeypatch.setattr("relay.app.MAX_BODY_BYTES", 1000)
    status, error = refused(json={**CHAT, "padding": "x" * 2000})
    assert (status, error["code"]) == (413, "request_too_large")


def test_wrong_content_type(refused):
    status, error = refused(content=b"model=gpt", headers={"content-type": "text/plain"})
    assert (status, error["code"]) == (415, "unsupported_media_type")


def test_unknown_route(refused):
    status, error = refused("/images/variations", json=CHAT)
    assert (status, error["code"]) == (404, "not_found")


def test_wrong_method(refused):
    status, error = refused("/chat/completions", method="GET")
    assert (status, error["code"]) == (405, "method_not_allowed")


def test_missing_key(refused):
    status, error = refused(json=CHAT, headers={"authorization": ""})
    assert (status, error["code"], error["type"]) == (
        401,
        "invalid_api_key",
        "authentication_error",
    )


def test_disabled_token(refused, funded_user):
    from accounts.models import Token
    from tokens.services import token_set_enabled

    token_set_enabled(token=Token.objects.get(user=funded_user), is_enabled=False)
    status, error = refused(json=CHAT)
    assert (status, error["code"]) == (401, "invalid_api_key")


def test_expired_token(refused, funded_user):
    _token, key = token_create(
        user=funded_user, name="old", expires_at=timezone.now() - timedelta(minutes=1)
    )
    status, error = refused(json=CHAT, key=key)
    assert (status, error["code"]) == (401, "invalid_api_key")
    assert "expired" in error["message"]


def test_query_only_token_may_not_spend(refused, funded_user):
    _token, key = token_create(user=funded_user, name="query only", quota_remaining=0)
    status, error = refused(json=CHAT, key=key)
    assert (status, error["code"]) == (402, "insufficient_quota")


def test_model_outside_the_allow_list(refused, funded_user):
    _token, key = token_create(user=funded_user, name="narrow", allowed_models=["other-model"])
    status, error = refused(json=CHAT, key=key)
    assert (status, error["code"], error["type"]) == (403, "model_not_allowed", "permission_error")


def test_ip_outside_the_allow_list(refused, funded_user):
    _token, key = token_create(user=funded_user, name="office", allowed_networks=["203.0.113.0/24"])
    status, error = refused(json=CHAT, key=key)
    assert (status, error["code"]) == (403, "ip_not_allowed")


def test_forwarded_for_is_ignored_from_an_untrusted_peer(refused, funded_user, settings):
    settings.TRUSTED_PROXIES = []
    _token, key = token_create(user=funded_user, name="office", allowed_networks=["203.0.113.0/24"])
    status, error = refused(json=CHAT, key=key, headers={"x-forwarded-for": "203.0.113.9"})
    assert (status, error["code"]) == (403, "ip_not_allowed")


def test_forwarded_for_is_believed_from_a_trusted_proxy(
    relay_url, funded_user, openai_channel, settings
):
    from .conftest import wait_for_logs

    settings.TRUSTED_PROXIES = ["127.0.0.1/32"]
    _token, key = token_create(user=funded_user, name="office", allowed_networks=["203.0.113.0/24"])

    response = httpx.post(
        f"{relay_url}/chat/completions",
        json=CHAT,
        # The left-most entry is whatever the client claimed; the proxy appended the truth.
        headers={"authorization": f"Bearer {key}", "x-forwarded-for": "10.9.9.9, 203.0.113.9"},
        timeout=10,
    )

    assert response.status_code == 200
    [log] = wait_for_logs(1)
    assert log.client_ip == "203.0.113.9"


def test_model_without_a_channel_is_a_503(relay_url, token_key, catalog_model, fake_upstream):
    response = httpx.post(
        f"{relay_url}/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {token_key}"},
        timeout=10,
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_available_channel"
    assert RequestLog.objects.count() == 0


def test_upstream_client_error_is_passed_through_without_charge(
    relay_url, token_key, catalog_model, fake_upstream, funded_user
):
    from .conftest import make_channel, wait_for_logs

    make_channel("picky", f"{fake_upstream.url}/status-400/v1")
    make_channel("other", f"{fake_upstream.url}/v1", priority=-1)
    balance = Account.objects.get(pk=funded_user.pk).balance

    response = httpx.post(
        f"{relay_url}/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {token_key}"},
        timeout=10,
    )

    # A 400 is about the request, not the channel: no failover, no charge.
    assert response.status_code == 400
    assert fake_upstream.app.stats.requests == 1
    [log] = wait_for_logs(1)
    assert (log.status_code, log.cost) == (400, 0)
    assert Account.objects.get(pk=funded_user.pk).balance == balance


def test_a_disabled_token_is_refused_within_one_second(
    relay_url, token_key, openai_channel, funded_user, token_memory_clock, settings
):
    from accounts.models import Token
    from tokens.services import token_set_enabled

    # The promise: the shared cache forgets the token when it is disabled, and the
    # relay's own memory holds it relay.memo.LOCAL_CACHE_SECONDS at most.
    assert LOCAL_CACHE_SECONDS < 1
    headers = {"authorization": f"Bearer {token_key}"}
    first = httpx.post(f"{relay_url}/chat/completions", json=CHAT, headers=headers, timeout=10)
    token_set_enabled(token=Token.objects.get(user=funded_user), is_enabled=False)
    token_memory_clock.advance(LOCAL_CACHE_SECONDS)
    second = httpx.post(f"{relay_url}/chat/completions", json=CHAT, headers=headers, timeout=10)

    assert (first.status_code, second.status_code) == (200, 401)


def test_token_disabled_after_it_was_cached_is_refused_as_invalid_not_unpaid(refused, funded_user):
    # Given a token whose enabled state sits in the shared cache ...
    token, key = token_create(user=funded_user, name="revoked behind the cache")
    assert token_authenticate(key) is not None
    # ... when it is disabled without going through the service that clears the cache,
    Token.objects.filter(pk=token.pk).update(is_enabled=False)

    status, error = refused(json=CHAT, key=key)

    # then the money core's own check refuses it, as a key problem, not a balance one.
    assert (status, error["code"]) == (401, "invalid_api_key")
