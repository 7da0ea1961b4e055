import time

import pytest
from allauth.account.internal.flows.login import (
    _AUTHENTICATION_METHODS_USER_SESSION_KEY,
    AUTHENTICATION_METHODS_SESSION_KEY,
)
from django.urls import reverse

from accounts.models import Token
from accounts.tokens import key_hash, token_authenticate
from tests.factories import UserFactory
from tokens.form_nonces import form_nonce_issue
from tokens.services import token_create

pytestmark = pytest.mark.django_db


def _signed_in_at(client, user, seconds_ago: float) -> None:
    """Record in the session that the user signed in `seconds_ago` (as allauth does)."""
    session = client.session
    session[AUTHENTICATION_METHODS_SESSION_KEY] = [
        {"method": "password", "at": time.time() - seconds_ago}
    ]
    session[_AUTHENTICATION_METHODS_USER_SESSION_KEY] = str(user.pk)
    session.save()


CREATE_FORM = {
    "name": "production",
    "quota": "12.5",
    "expires_at": "",
    "allowed_models": "gpt-4o\ngpt-4o-mini",
    "allowed_networks": "203.0.113.0/24",
    "concurrency_limit": "10",
    "rpm_limit": "",
}


def _create_form(user, **changes) -> dict:
    """The "new token" form as the page gives it to `user`: with a fresh single-use nonce."""
    return CREATE_FORM | {"form_nonce": form_nonce_issue(user.pk)} | changes


def test_the_list_shows_masked_keys_and_usage(user_client, user, django_assert_max_num_queries):
    for number in range(5):
        token_create(user=user, name=f"token-{number}", quota_remaining=number * 1_000_000)
    token_create(user=UserFactory(), name="not-mine")

    with django_assert_max_num_queries(8):
        response = user_client.get(reverse("tokens:list"))

    assert response.status_code == 200
    html = response.content.decode()
    for token in Token.objects.filter(user=user):
        assert f"sk-…{token.key_last4}" in html
    assert "not-mine" not in html
    assert "query-only" in html
    assert "$4.00" in html


def test_the_list_answers_htmx_with_the_table_only(user_client, user):
    token_create(user=user, name="ci")

    response = user_client.get(reverse("tokens:list"), HTTP_HX_REQUEST="true")

    assert b"<html" not in response.content
    assert b"<table" in response.content


def test_creating_a_token_asks_for_the_password_when_the_login_is_old(user_client, user):
    _signed_in_at(user_client, user, seconds_ago=3_600)

    response = user_client.post(reverse("tokens:create"), _create_form(user))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_reauthenticate"))
    assert not Token.objects.exists()


def test_creating_a_token_shows_the_key_once(user_client, user):
    _signed_in_at(user_client, user, seconds_ago=10)

    response = user_client.post(reverse("tokens:create"), _create_form(user))

    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    token = Token.objects.get()
    html = response.content.decode()
    start = html.index('id="new-key"')
    key = html[start:].split('value="', 1)[1].split('"', 1)[0]
    assert key_hash(key) == token.key_hash
    assert "data-open-on-load" in html
    assert (token.name, token.quota_remaining, token.concurrency_limit) == (
        "production",
        12_500_000,
        10,
    )
    assert token.allowed_models == ["gpt-4o", "gpt-4o-mini"]
    # The key is never shown again
    assert key not in user_client.get(reverse("tokens:list")).content.decode()
    assert key not in user_client.get(reverse("tokens:edit", args=[token.pk])).content.decode()


def test_a_bad_form_is_answered_400_and_creates_nothing(user_client, user):
    _signed_in_at(user_client, user, seconds_ago=10)

    response = user_client.post(
        reverse("tokens:create"), _create_form(user, allowed_networks="300.1.1.1", quota="-1")
    )

    assert response.status_code == 400
    assert "not an IP address" in response.content.decode()
    assert not Token.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "prod\x00"),
        ("allowed_models", "gpt-4o\x00"),
        ("allowed_networks", "203.0.113.0/24\x00"),
        ("quota", "1e309"),
        ("quota", "9999999999"),
        ("rpm_limit", "99999999999"),
        ("rpm_limit", "²"),
        ("concurrency_limit", "①"),
    ],
)
def test_bad_input_in_the_token_form_is_a_form_error_and_changes_nothing(
    user_client, user, field, value
):
    _signed_in_at(user_client, user, seconds_ago=10)
    token, _ = token_create(user=user, name="ci")
    before = list(Token.objects.values_list())

    created = user_client.post(reverse("tokens:create"), _create_form(user, **{field: value}))
    edited = user_client.post(reverse("tokens:edit", args=[token.pk]), CREATE_FORM | {field: value})

    assert (created.status_code, edited.status_code) == (400, 400)
    assert edited.context["form"].errors[field]
    assert list(Token.objects.values_list()) == before


def test_toggle_disables_inline_and_the_key_stops_working(
    user_client, user, django_capture_on_commit_callbacks
):
    token, key = token_create(user=user, name="ci")
    assert token_authenticate(key) is not None

    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.post(
            reverse("tokens:toggle", args=[token.pk]), HTTP_HX_REQUEST="true"
        )

    assert response.status_code == 200
    assert b"<tr" in response.content
    assert b"<html" not in response.content
    assert b"disabled" in response.content
    token.refresh_from_db()
    assert not token.is_enabled
    assert token_authenticate(key) is None


def test_edit_changes_the_settings(user_client, user):
    token, _ = token_create(user=user, name="ci")

    response = user_client.post(
        reverse("tokens:edit", args=[token.pk]), CREATE_FORM | {"name": "renamed", "quota": ""}
    )

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.name == "renamed"
    assert token.quota_remaining is None


def test_delete_removes_the_token(user_client, user, django_capture_on_commit_callbacks):
    token, key = token_create(user=user, name="ci")
    assert token_authenticate(key) is not None

    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.post(reverse("tokens:delete", args=[token.pk]))

    assert response.status_code == 302
    assert not Token.objects.exists()
    assert token_authenticate(key) is None


def test_the_delete_form_asks_for_confirmation(user_client, user):
    token_create(user=user, name="ci")

    html = user_client.get(reverse("tokens:list")).content.decode()

    assert 'data-confirm="Delete the token' in html


@pytest.mark.parametrize(
    ("route", "method"),
    [
        ("tokens:edit", "get"),
        ("tokens:edit", "post"),
        ("tokens:toggle", "post"),
        ("tokens:delete", "post"),
    ],
)
def test_another_users_token_is_404_everywhere_in_the_console(user_client, route, method):
    token, key = token_create(user=UserFactory(), name="theirs")

    response = getattr(user_client, method)(reverse(route, args=[token.pk]), CREATE_FORM)

    assert response.status_code == 404
    token.refresh_from_db()
    assert token.is_enabled
    assert token.name == "theirs"
    assert token_authenticate(key) is not None
