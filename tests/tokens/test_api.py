import json
import time

import pytest
from allauth.account.internal.flows.login import (
    _AUTHENTICATION_METHODS_USER_SESSION_KEY,
    AUTHENTICATION_METHODS_SESSION_KEY,
)

from accounts.models import Token
from accounts.tokens import key_hash, token_authenticate
from tests.factories import UserFactory
from tokens.services import token_create

pytestmark = pytest.mark.django_db


def _signed_in_now(client, user) -> None:
    session = client.session
    session[AUTHENTICATION_METHODS_SESSION_KEY] = [{"method": "password", "at": time.time()}]
    session[_AUTHENTICATION_METHODS_USER_SESSION_KEY] = str(user.pk)
    session.save()


def test_create_needs_a_recent_sign_in_and_changes_nothing_without(user_client, user):
    response = user_client.post("/api/tokens/", {"name": "ci"}, content_type="application/json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "reauthentication_required"
    assert not Token.objects.exists()


def test_create_returns_the_key_once_and_list_never_does(user_client, user):
    _signed_in_now(user_client, user)
    response = user_client.post(
        "/api/tokens/",
        {"name": "ci", "quota_remaining": "2.5", "allowed_models": ["gpt-4o"]},
        content_type="application/json",
    )

    assert response.status_code == 201
    body = response.json()
    token = Token.objects.get()
    assert key_hash(body["key"]) == token.key_hash
    assert body["quota_remaining"] == "2.500000"
    assert token.quota_remaining == 2_500_000
    listed = user_client.get("/api/tokens/").json()
    assert listed[0]["masked_key"] == f"sk-…{token.key_last4}"
    assert "key" not in listed[0]
    assert body["key"] not in str(listed)


def test_update_can_disable_and_the_key_stops_working(
    user_client, user, django_capture_on_commit_callbacks
):
    token, key = token_create(user=user, name="ci")
    assert token_authenticate(key) is not None

    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.patch(
            f"/api/tokens/{token.pk}/", {"is_enabled": False}, content_type="application/json"
        )

    assert response.status_code == 200
    assert response.json()["status"] == "disabled"
    assert token_authenticate(key) is None


def test_bad_input_is_a_400_in_the_api_error_shape(user_client, user):
    _signed_in_now(user_client, user)
    response = user_client.post(
        "/api/tokens/",
        {"name": "ci", "allowed_networks": ["nope"]},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["param"].startswith("allowed_networks")
    assert not Token.objects.exists()


@pytest.mark.parametrize("method", ["get", "patch", "put", "delete"])
def test_another_users_token_is_404_in_the_api(user_client, method):
    token, key = token_create(user=UserFactory(), name="theirs")

    response = getattr(user_client, method)(
        f"/api/tokens/{token.pk}/", {"name": "mine now"}, content_type="application/json"
    )

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    token.refresh_from_db()
    assert token.name == "theirs"
    assert token_authenticate(key) is not None


def test_delete_removes_the_token(user_client, user, django_capture_on_commit_callbacks):
    token, key = token_create(user=user, name="ci")
    assert token_authenticate(key) is not None

    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.delete(f"/api/tokens/{token.pk}/")

    assert response.status_code == 204
    assert not Token.objects.exists()
    assert token_authenticate(key) is None


def test_the_api_needs_a_session(client):
    assert client.get("/api/tokens/").status_code in (401, 403)
    assert client.get("/api/account/").status_code in (401, 403)


def test_the_schema_documents_tokens_account_and_ledger(client):
    schema = client.get("/api/schema/").content.decode()

    for path in ("/api/tokens/", "/api/tokens/{id}/", "/api/account/", "/api/ledger/"):
        assert path in schema


def _digits_of(number: int, zero: str) -> str:
    """Return `number` written with the ten digits that start at `zero`."""
    return "".join(chr(ord(zero) + int(digit)) for digit in str(number))


@pytest.mark.parametrize(
    "token_id",
    [
        lambda pk: _digits_of(pk, "\u0660"),  # Arabic-Indic: int() reads them
        lambda pk: _digits_of(pk, "\uff10"),  # fullwidth: int() reads them too
        lambda pk: "²",
        lambda pk: "①",
        lambda pk: f"{pk}.0",
        lambda pk: f"+{pk}",
        lambda pk: "9" * 30,
        lambda pk: "1e3",
    ],
)
def test_a_token_id_that_is_not_ascii_digits_is_a_404_and_changes_nothing(
    user_client, user, token_id
):
    token, _key = token_create(user=user, name="ci")
    before = list(Token.objects.values_list())
    url = f"/api/tokens/{token_id(token.pk)}/"

    responses = [
        user_client.get(url),
        user_client.patch(url, {"name": "x"}, content_type="application/json"),
        user_client.delete(url),
    ]

    for response in responses:
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"
    assert list(Token.objects.values_list()) == before


def test_an_update_nested_too_deep_is_a_400_and_changes_nothing(user_client, user):
    token, _key = token_create(user=user, name="ci")
    before = list(Token.objects.values_list())

    response = user_client.patch(
        f"/api/tokens/{token.pk}/", "[" * 100_000, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert list(Token.objects.values_list()) == before


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"name": "ci\u0000"}, "name", "null_characters_not_allowed"),
        ({"name": "\ud800"}, "name", "surrogate_characters_not_allowed"),
        ({"allowed_models": ["gpt\u0000"]}, "allowed_models.0", "null_characters_not_allowed"),
        ({"quota_remaining": "1e309"}, "quota_remaining", "max_digits"),
        ({"quota_remaining": "1000000001"}, "quota_remaining", "invalid"),
        ({"rpm_limit": "²"}, "rpm_limit", "invalid"),
    ],
)
def test_an_update_postgresql_cannot_store_is_a_400_and_changes_nothing(
    user_client, user, body, param, code
):
    token, _key = token_create(user=user, name="ci")
    before = list(Token.objects.values_list())

    response = user_client.patch(
        f"/api/tokens/{token.pk}/", json.dumps(body), content_type="application/json"
    )

    assert response.status_code == 400
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == (param, code)
    assert list(Token.objects.values_list()) == before
