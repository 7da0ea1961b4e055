"""A key is shown once: a form posted again creates or rolls nothing; rolling a key."""

import time
from datetime import timedelta
from unittest import mock

import pytest
from allauth.account.internal.flows.login import (
    _AUTHENTICATION_METHODS_USER_SESSION_KEY,
    AUTHENTICATION_METHODS_SESSION_KEY,
)
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from accounts.models import Token, TokenFormNonce
from accounts.tokens import key_hash, token_authenticate
from billing.models import Account, LedgerEntry
from billing.services import account_credit
from tests.factories import UserFactory
from tokens import form_nonces
from tokens.form_nonces import form_nonce_check, form_nonce_issue
from tokens.services import FormAlreadyUsed, token_create, token_delete, token_roll

pytestmark = pytest.mark.django_db

NEW_TOKEN = {"name": "laptop", "quota": "3", "concurrency_limit": "10"}


def _signed_in_now(client, user) -> None:
    session = client.session
    session[AUTHENTICATION_METHODS_SESSION_KEY] = [{"method": "password", "at": time.time()}]
    session[_AUTHENTICATION_METHODS_USER_SESSION_KEY] = str(user.pk)
    session.save()


def _shown_key(html: str) -> str:
    start = html.index('id="new-key"')
    return html[start:].split('value="', 1)[1].split('"', 1)[0]


def _nonce_of(html: str) -> str:
    start = html.index('name="form_nonce"')
    return html[start:].split('value="', 1)[1].split('"', 1)[0]


def _books(user) -> tuple:
    account = Account.objects.get(pk=user.pk)
    return (
        account.balance,
        account.reserved,
        account.used,
        account.request_count,
        LedgerEntry.objects.filter(account=account).count(),
    )


def _everything_stored(client) -> str:
    """Every row of the tables a key could hide in, and the session, as text."""
    rows = [
        *Token.objects.values_list(),
        *TokenFormNonce.objects.values_list(),
        *Session.objects.values_list("session_data"),
    ]
    return repr(rows) + repr(dict(client.session))


# --- the nonce ------------------------------------------------------------------


def test_a_nonce_is_for_the_user_it_was_issued_to_and_cannot_be_forged():
    value = form_nonce_issue(7)

    assert form_nonce_check(value, 7)
    assert form_nonce_check(value, 8) is None
    assert form_nonce_check(value[:-1] + ("A" if value[-1] != "A" else "B"), 7) is None
    assert form_nonce_check("made-up", 7) is None
    assert form_nonce_issue(7) != value


def test_a_nonce_older_than_a_day_is_refused():
    value = form_nonce_issue(7)
    later = time.time() + form_nonces.FORM_NONCE_MAX_AGE_SECONDS + 5

    with mock.patch("django.core.signing.time.time", return_value=later):
        assert form_nonce_check(value, 7) is None


def test_the_same_nonce_creates_one_token(user):
    nonce = form_nonce_check(form_nonce_issue(user.pk), user.pk)
    token, key = token_create(user=user, name="laptop", form_nonce=nonce)

    with pytest.raises(FormAlreadyUsed) as raised:
        token_create(user=user, name="laptop", form_nonce=nonce)

    assert raised.value.token == token
    assert Token.objects.filter(user=user).count() == 1
    assert TokenFormNonce.objects.get().token == token
    assert key not in repr(list(TokenFormNonce.objects.values_list()))


def test_nonces_of_another_user_do_not_collide(user):
    other = UserFactory()
    token_create(user=user, name="mine", form_nonce="same")

    token_create(user=other, name="theirs", form_nonce="same")

    assert Token.objects.count() == 2


def test_expired_nonce_rows_are_forgotten_when_a_new_one_is_used(user):
    token_create(user=user, name="old", form_nonce="old-nonce")
    TokenFormNonce.objects.update(
        created_at=timezone.now() - timedelta(seconds=form_nonces.FORM_NONCE_MAX_AGE_SECONDS + 60)
    )

    token_create(user=user, name="new", form_nonce="new-nonce")

    assert list(TokenFormNonce.objects.values_list("nonce", flat=True)) == ["new-nonce"]


# --- the "new token" form posted again ---------------------------------------------


def test_posting_the_new_token_form_again_creates_nothing_and_shows_no_key(user_client, user):
    _signed_in_now(user_client, user)
    form = NEW_TOKEN | {
        "form_nonce": _nonce_of(user_client.get(reverse("tokens:create")).content.decode())
    }

    first = user_client.post(reverse("tokens:create"), form)
    again = user_client.post(reverse("tokens:create"), form)

    assert first.status_code == 201
    key = _shown_key(first.content.decode())
    token = Token.objects.get(user=user)
    assert key_hash(key) == token.key_hash
    assert again.status_code == 200
    assert again["Cache-Control"] == "no-store"
    html = again.content.decode()
    assert Token.objects.filter(user=user).count() == 1
    assert key not in html
    assert 'id="new-key"' not in html
    assert "already submitted" in html
    assert "“laptop”" in html
    assert reverse("tokens:roll", args=[token.pk]) in html
    # The key is stored nowhere: not in a table, not in the session.
    assert key not in _everything_stored(user_client)


def test_posting_the_form_again_after_deleting_its_token_creates_nothing(user_client, user):
    _signed_in_now(user_client, user)
    form = NEW_TOKEN | {"form_nonce": form_nonce_issue(user.pk)}
    user_client.post(reverse("tokens:create"), form)
    token_delete(token=Token.objects.get(user=user))

    again = user_client.post(reverse("tokens:create"), form)

    assert again.status_code == 200
    assert "has since been deleted" in again.content.decode()
    assert not Token.objects.filter(user=user).exists()


@pytest.mark.parametrize(
    "nonce",
    [
        None,
        "",
        "forged",
        "other-user",
    ],
)
def test_a_form_without_a_valid_nonce_creates_nothing_and_gets_a_fresh_one(
    user_client, user, nonce
):
    _signed_in_now(user_client, user)
    form = dict(NEW_TOKEN)
    if nonce == "other-user":
        form["form_nonce"] = form_nonce_issue(UserFactory().pk)
    elif nonce is not None:
        form["form_nonce"] = nonce

    response = user_client.post(reverse("tokens:create"), form)

    assert response.status_code == 400
    html = response.content.decode()
    assert "out of date" in html
    assert not Token.objects.exists()
    fresh = _nonce_of(html)
    assert form_nonce_check(fresh, user.pk)
    # Submitting what the page now holds works.
    assert (
        user_client.post(reverse("tokens:create"), NEW_TOKEN | {"form_nonce": fresh}).status_code
        == 201
    )


def test_a_form_with_a_bad_field_keeps_its_nonce_and_works_once_fixed(user_client, user):
    _signed_in_now(user_client, user)
    form = NEW_TOKEN | {"form_nonce": form_nonce_issue(user.pk)}

    bad = user_client.post(reverse("tokens:create"), form | {"quota": "-1"})
    fixed = user_client.post(reverse("tokens:create"), form)

    assert bad.status_code == 400
    assert fixed.status_code == 201
    assert Token.objects.count() == 1


def test_a_refused_creation_uses_no_nonce(user_client, user, monkeypatch):
    _signed_in_now(user_client, user)
    monkeypatch.setattr("tokens.services.TOKENS_PER_USER", 1)
    existing, _key = token_create(user=user, name="only")
    form = NEW_TOKEN | {"form_nonce": form_nonce_issue(user.pk)}

    refused = user_client.post(reverse("tokens:create"), form)
    token_delete(token=existing)
    created = user_client.post(reverse("tokens:create"), form)

    assert refused.status_code == 400
    assert "the most an account may have" in refused.content.decode()
    assert created.status_code == 201


# --- rolling a key -----------------------------------------------------------------


def test_rolling_gives_a_new_key_to_the_same_token_and_moves_no_money(
    user, django_capture_on_commit_callbacks
):
    account_credit(user_id=user.pk, amount=7_000_000, idempotency_key=f"test:{user.pk}")
    token, old_key = token_create(
        user=user,
        name="ci",
        quota_remaining=2_000_000,
        allowed_models=["gpt-4o"],
        allowed_networks=["203.0.113.0/24"],
        rpm_limit=30,
    )
    Token.objects.filter(pk=token.pk).update(used=1_234, request_count=5)
    assert token_authenticate(old_key) is not None  # cached now
    before = Token.objects.filter(pk=token.pk).values().get()
    books = _books(user)

    with django_capture_on_commit_callbacks(execute=True):
        rolled, new_key = token_roll(token=token)

    after = Token.objects.filter(pk=rolled.pk).values().get()
    assert rolled.pk == token.pk
    assert new_key != old_key
    assert after["key_hash"] == key_hash(new_key)
    assert after["key_last4"] == new_key[-4:]
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"key_hash", "key_prefix", "key_last4", "updated_at"}
    assert token_authenticate(old_key) is None
    info = token_authenticate(new_key)
    assert info is not None
    assert (info.id, info.quota_remaining, info.rpm_limit) == (token.pk, 2_000_000, 30)
    assert _books(user) == books
    assert cache.get(f"token:{key_hash(old_key)}") is None


def test_the_roll_page_asks_first_and_rolls_once(
    user_client, user, django_capture_on_commit_callbacks
):
    _signed_in_now(user_client, user)
    token, old_key = token_create(user=user, name="ci")
    books = _books(user)

    page = user_client.get(reverse("tokens:roll", args=[token.pk]))
    assert page.status_code == 200
    assert Token.objects.get().key_hash == key_hash(old_key)  # asking changes nothing
    form = {"form_nonce": _nonce_of(page.content.decode())}

    with django_capture_on_commit_callbacks(execute=True):
        rolled = user_client.post(reverse("tokens:roll", args=[token.pk]), form)
    again = user_client.post(reverse("tokens:roll", args=[token.pk]), form)

    assert rolled.status_code == 200
    assert rolled["Cache-Control"] == "no-store"
    new_key = _shown_key(rolled.content.decode())
    assert "The old key is refused" in rolled.content.decode()
    assert again.status_code == 200
    assert new_key not in again.content.decode()
    assert "already submitted" in again.content.decode()
    assert Token.objects.get().key_hash == key_hash(new_key)  # rolled once only
    assert token_authenticate(old_key) is None
    assert token_authenticate(new_key) is not None
    assert _books(user) == books
    assert new_key not in _everything_stored(user_client)


def test_rolling_asks_for_the_password_when_the_login_is_old(user_client, user):
    token, key = token_create(user=user, name="ci")

    response = user_client.post(
        reverse("tokens:roll", args=[token.pk]), {"form_nonce": form_nonce_issue(user.pk)}
    )

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_reauthenticate"))
    assert Token.objects.get().key_hash == key_hash(key)


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_users_token_cannot_be_rolled(user_client, user, method):
    _signed_in_now(user_client, user)
    token, key = token_create(user=UserFactory(), name="theirs")

    response = getattr(user_client, method)(
        reverse("tokens:roll", args=[token.pk]), {"form_nonce": form_nonce_issue(user.pk)}
    )

    assert response.status_code == 404
    assert Token.objects.get().key_hash == key_hash(key)


def test_the_api_rolls_a_key_and_the_old_one_stops_working(
    user_client, user, django_capture_on_commit_callbacks
):
    _signed_in_now(user_client, user)
    token, old_key = token_create(user=user, name="ci", quota_remaining=1_000_000)
    books = _books(user)

    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.post(f"/api/tokens/{token.pk}/roll/")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["id"] == token.pk
    assert body["quota_remaining"] == "1.000000"
    assert body["masked_key"] == f"sk-…{body['key'][-4:]}"
    assert key_hash(body["key"]) == Token.objects.get().key_hash
    assert token_authenticate(old_key) is None
    assert token_authenticate(body["key"]) is not None
    assert "key" not in user_client.get(f"/api/tokens/{token.pk}/").json()
    assert _books(user) == books


def test_the_api_roll_needs_a_recent_sign_in_and_changes_nothing_without(user_client, user):
    token, key = token_create(user=user, name="ci")

    response = user_client.post(f"/api/tokens/{token.pk}/roll/")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "reauthentication_required"
    assert Token.objects.get().key_hash == key_hash(key)


def test_the_api_cannot_roll_another_users_token(user_client, user):
    _signed_in_now(user_client, user)
    token, key = token_create(user=UserFactory(), name="theirs")

    response = user_client.post(f"/api/tokens/{token.pk}/roll/")

    assert response.status_code == 404
    assert Token.objects.get().key_hash == key_hash(key)


def test_the_schema_documents_the_roll(client):
    schema = client.get("/api/schema/").content.decode()

    assert "/api/tokens/{id}/roll/" in schema
