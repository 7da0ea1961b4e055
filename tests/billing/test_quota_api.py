import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Token
from tests.billing.helpers import fund, spend
from tokens.services import token_create, token_set_enabled

pytestmark = pytest.mark.django_db


@pytest.fixture
def keys(user, django_capture_on_commit_callbacks):
    user.display_name = "example_user"
    user.save()
    fund(user, 2_105_234_088)
    spender, spender_key = token_create(user=user, name="tts_test", quota_remaining=11_037_926)
    spend(spender, cost=2_099_206)
    _query_only, query_key = token_create(user=user, name="query_only", quota_remaining=0)
    _unlimited, unlimited_key = token_create(user=user, name="unlimited")
    return {"spender": spender_key, "query": query_key, "unlimited": unlimited_key}


def test_the_quota_api_answers_exactly_the_documented_shape(client, keys):
    response = client.get("/user/quota", HTTP_AUTHORIZATION=f"Bearer {keys['query']}")

    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["username", "total_quota", "total_used_quota", "request_count", "keys"]
    assert body["username"] == "example_user"
    assert body["total_quota"] == 2103.134882
    assert body["total_used_quota"] == 2.099206
    assert body["request_count"] == 1
    by_name = {key["name"]: key for key in body["keys"]}
    assert by_name["tts_test"] == {
        "name": "tts_test",
        "remain_quota": 8.93872,
        "used_quota": 2.099206,
    }
    assert by_name["query_only"] == {"name": "query_only", "remain_quota": 0, "used_quota": 0}
    assert by_name["unlimited"]["remain_quota"] == -1
    assert b"2103.134882" in response.content


def test_the_key_may_come_in_the_query_string(client, keys):
    assert client.get(f"/user/quota?key={keys['spender']}").status_code == 200
    assert client.get(f"/user/quota/?key={keys['unlimited']}").status_code == 200


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer ", "Bearer sk-nonsense", "Basic abc", "Bearer sk-" + "A" * 39],
)
def test_missing_or_malformed_keys_get_401_in_the_openai_shape(client, keys, authorization):
    response = client.get("/user/quota", HTTP_AUTHORIZATION=authorization)

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "authentication_error"


def test_unknown_disabled_and_expired_keys_get_401(
    client, user, keys, django_capture_on_commit_callbacks
):
    from accounts.tokens import key_generate

    assert client.get(f"/user/quota?key={key_generate()}").status_code == 401

    token = Token.objects.get(name="unlimited")
    with django_capture_on_commit_callbacks(execute=True):
        token_set_enabled(token=token, is_enabled=False)
    assert client.get(f"/user/quota?key={keys['unlimited']}").status_code == 401

    _expired, expired_key = token_create(
        user=user, name="old", expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert client.get(f"/user/quota?key={expired_key}").status_code == 401


def test_the_key_never_reaches_the_server_log(client, keys, caplog):
    from accounts.tokens import key_generate

    unknown = key_generate()
    with caplog.at_level(logging.DEBUG):
        client.get(f"/user/quota?key={unknown}")
        client.get(f"/user/quota?key={keys['spender']}")
        logging.getLogger("django.server").info('"GET /user/quota?key=%s HTTP/1.1" 401', unknown)

    from comet.logging import MaskSecretsFilter

    masker = MaskSecretsFilter()
    for record in caplog.records:
        masker.filter(record)
        assert unknown not in record.getMessage()
        assert keys["spender"] not in record.getMessage()


def test_balance_queries_past_the_limit_are_refused_with_429(client, keys, monkeypatch):
    monkeypatch.setattr("billing.views.QUOTA_QUERIES_PER_MINUTE", 3)
    good = {"HTTP_AUTHORIZATION": f"Bearer {keys['query']}"}

    # Bad keys count too: the endpoint is no fast way to guess keys.
    assert client.get("/user/quota", {"key": "sk-wrong"}).status_code == 401
    assert client.get("/user/quota", **good).status_code == 200
    assert client.get("/user/quota", **good).status_code == 200
    refused = client.get("/user/quota", **good)

    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    # Another address has its own allowance.
    assert client.get("/user/quota", REMOTE_ADDR="198.51.100.7", **good).status_code == 200
