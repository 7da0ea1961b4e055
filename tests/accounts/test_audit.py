"""The audit log: one row per change a customer or an operator asks about later, written
in the change's own transaction; none for a change refused or rolled back."""

import json
import re
from io import StringIO

import pytest
from django.urls import reverse

from accounts.models import AuditEvent, Token
from accounts.services import AuditOutsideTransaction, audit_record
from tests.accounts.helpers import audit_rows_then_roll_back
from tests.factories import StaffFactory, UserFactory
from tests.tokens.test_api import _signed_in_now
from tests.tokens.test_views import CREATE_FORM, _create_form
from tokens.services import token_create, token_delete, token_roll, token_set_enabled, token_update

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action


class Boom(Exception):
    pass


def _only_event() -> AuditEvent:
    [event] = AuditEvent.objects.all()
    return event


def _as_row(event: AuditEvent) -> tuple:
    return (
        event.action,
        event.actor_id,
        event.user_id,
        event.target_type,
        event.target_id,
        event.target_label,
    )


def _settings(token: Token, **changes) -> dict:
    current = {
        "name": token.name,
        "quota_remaining": token.quota_remaining,
        "expires_at": token.expires_at,
        "allowed_models": token.allowed_models,
        "allowed_networks": token.allowed_networks,
        "concurrency_limit": token.concurrency_limit,
        "rpm_limit": token.rpm_limit,
    }
    return current | changes


# --- Tokens, from the console -------------------------------------------------------


def test_creating_a_token_in_the_console_is_one_row_by_its_owner_without_the_key(user_client, user):
    _signed_in_now(user_client, user)

    response = user_client.post(reverse("tokens:create"), _create_form(user))

    assert response.status_code == 201
    token = Token.objects.get()
    event = _only_event()
    assert _as_row(event) == (
        Action.TOKEN_CREATED,
        user.pk,
        user.pk,
        "accounts.token",
        token.pk,
        "production",
    )
    html = response.content.decode()
    key = html[html.index('id="new-key"') :].split('value="', 1)[1].split('"', 1)[0]
    row = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert key not in row
    assert token.key_hash not in row
    assert key[-4:] not in row


def test_a_form_posted_twice_or_refused_writes_no_second_row(user_client, user, monkeypatch):
    _signed_in_now(user_client, user)
    form = _create_form(user)
    user_client.post(reverse("tokens:create"), form)
    user_client.post(reverse("tokens:create"), form)
    monkeypatch.setattr("tokens.services.TOKENS_PER_USER", 1)

    refused = user_client.post(reverse("tokens:create"), _create_form(user, name="second"))

    assert refused.status_code == 400
    assert Token.objects.count() == 1
    assert _only_event().action == Action.TOKEN_CREATED


def test_editing_a_token_names_what_changed(user_client, user):
    token, _key = token_create(user=user, name="ci")
    AuditEvent.objects.all().delete()

    response = user_client.post(
        reverse("tokens:edit", args=[token.pk]),
        CREATE_FORM
        | {"name": "ci", "quota": "", "allowed_models": "", "allowed_networks": ""}
        | {"concurrency_limit": "100", "rpm_limit": "60"},
    )

    assert response.status_code == 302
    event = _only_event()
    assert _as_row(event) == (
        Action.TOKEN_CHANGED,
        user.pk,
        user.pk,
        "accounts.token",
        token.pk,
        "ci",
    )
    assert event.detail == {"changed": ["rpm_limit"]}


def test_a_save_that_changes_nothing_or_is_refused_writes_no_row(user):
    from tests.billing.helpers import fund

    fund(user, 1_000_000)
    token, _key = token_create(user=user, name="ci", quota_remaining=500_000)
    Token.objects.filter(pk=token.pk).update(reserved=300_000)
    AuditEvent.objects.all().delete()

    token_update(token=token, actor=user, **_settings(token))
    with pytest.raises(Exception, match="in flight"):
        token_update(token=token, actor=user, **_settings(token, quota_remaining=200_000))

    assert not AuditEvent.objects.exists()


def test_disabling_and_enabling_in_the_console_is_a_row_each_and_a_repeat_none(user_client, user):
    token, _key = token_create(user=user, name="ci")
    AuditEvent.objects.all().delete()

    user_client.post(reverse("tokens:toggle", args=[token.pk]))
    token_set_enabled(token=token, is_enabled=False, actor=user)
    user_client.post(reverse("tokens:toggle", args=[token.pk]))

    rows = [_as_row(event) for event in AuditEvent.objects.order_by("pk")]
    assert rows == [
        (Action.TOKEN_DISABLED, user.pk, user.pk, "accounts.token", token.pk, "ci"),
        (Action.TOKEN_ENABLED, user.pk, user.pk, "accounts.token", token.pk, "ci"),
    ]


def test_rolling_a_key_and_deleting_in_the_console_keep_the_tokens_id_and_name(user_client, user):
    _signed_in_now(user_client, user)
    token, _key = token_create(user=user, name="laptop")
    AuditEvent.objects.all().delete()

    page = user_client.get(reverse("tokens:roll", args=[token.pk])).content.decode()
    nonce = page.split('name="form_nonce" value="', 1)[1].split('"', 1)[0]
    assert user_client.post(reverse("tokens:roll", args=[token.pk]), {"form_nonce": nonce})
    user_client.post(reverse("tokens:roll", args=[token.pk]), {"form_nonce": nonce})
    user_client.post(reverse("tokens:delete", args=[token.pk]))

    assert not Token.objects.exists()
    rows = [_as_row(event) for event in AuditEvent.objects.order_by("pk")]
    assert rows == [
        (Action.TOKEN_KEY_ROLLED, user.pk, user.pk, "accounts.token", token.pk, "laptop"),
        (Action.TOKEN_DELETED, user.pk, user.pk, "accounts.token", token.pk, "laptop"),
    ]


# --- Tokens, from the API and without a person ---------------------------------------


def test_every_token_change_through_the_api_is_one_row_by_its_caller(user_client, user):
    _signed_in_now(user_client, user)

    created = user_client.post("/api/tokens/", {"name": "ci"}, content_type="application/json")
    token_id = created.json()["id"]
    user_client.patch(
        f"/api/tokens/{token_id}/",
        {"name": "ci-2", "is_enabled": False},
        content_type="application/json",
    )
    user_client.post(f"/api/tokens/{token_id}/roll/")
    user_client.delete(f"/api/tokens/{token_id}/")

    rows = [_as_row(event) for event in AuditEvent.objects.order_by("pk")]
    assert rows == [
        (Action.TOKEN_CREATED, user.pk, user.pk, "accounts.token", token_id, "ci"),
        (Action.TOKEN_CHANGED, user.pk, user.pk, "accounts.token", token_id, "ci-2"),
        (Action.TOKEN_DISABLED, user.pk, user.pk, "accounts.token", token_id, "ci-2"),
        (Action.TOKEN_KEY_ROLLED, user.pk, user.pk, "accounts.token", token_id, "ci-2"),
        (Action.TOKEN_DELETED, user.pk, user.pk, "accounts.token", token_id, "ci-2"),
    ]


def test_a_token_made_by_a_command_is_done_by_the_system(user):
    from django.core.management import call_command

    call_command("create_token", user.email, "cron", stdout=StringIO())

    event = _only_event()
    assert (event.action, event.actor_id, event.user_id) == (Action.TOKEN_CREATED, None, user.pk)


# --- One transaction: the change and its row, or neither ----------------------------


@pytest.mark.django_db(transaction=True)
def test_a_row_is_never_written_outside_a_transaction():
    token, _key = token_create(user=UserFactory(), name="ci")
    before = AuditEvent.objects.count()

    with pytest.raises(AuditOutsideTransaction):
        audit_record(action=Action.TOKEN_DISABLED, target=token, user_id=token.user_id)

    assert AuditEvent.objects.count() == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", ["create", "update", "disable", "roll", "delete"])
def test_a_change_rolled_back_after_it_was_made_leaves_no_row(change):
    user = UserFactory()
    token, _key = token_create(user=user, name="ci")
    before = (list(Token.objects.values_list()), list(AuditEvent.objects.values_list()))
    make = {
        "create": lambda: token_create(user=user, name="two", actor=user),
        "update": lambda: token_update(token=token, actor=user, **_settings(token, name="x")),
        "disable": lambda: token_set_enabled(token=token, is_enabled=False, actor=user),
        "roll": lambda: token_roll(token=token, actor=user),
        "delete": lambda: token_delete(token=token, actor=user),
    }[change]

    # When the change is made (with its row) and something fails after it
    assert audit_rows_then_roll_back(make) == 1

    # Then neither the change nor its row remains
    assert (list(Token.objects.values_list()), list(AuditEvent.objects.values_list())) == before


@pytest.mark.django_db(transaction=True)
def test_a_row_that_cannot_be_written_undoes_the_change(monkeypatch):
    user = UserFactory()
    token, _key = token_create(user=user, name="ci")

    def refuse(**_fields):
        raise Boom

    monkeypatch.setattr(AuditEvent.objects, "create", refuse)
    with pytest.raises(Boom):
        token_set_enabled(token=token, is_enabled=False, actor=user)

    assert Token.objects.get(pk=token.pk).is_enabled


# --- The admin: read-only, filtered by action and date, searched by email ----------


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory())
    return client


def test_the_admin_lists_filters_and_searches_but_changes_nothing(staff_client):
    alice = UserFactory(email="alice@example.com")
    bob = UserFactory(email="bob@example.com")
    alice_token, _key = token_create(user=alice, name="alice-ci", actor=alice)
    token_create(user=bob, name="bob-ci", actor=bob)
    token_set_enabled(token=alice_token, is_enabled=False, actor=alice)
    changelist = reverse("admin:accounts_auditevent_changelist")

    everything = staff_client.get(changelist).content.decode()
    disabled = staff_client.get(changelist, {"action__exact": "token.disabled"}).content.decode()
    bobs = staff_client.get(changelist, {"q": "bob@example"}).content.decode()
    year = AuditEvent.objects.first().created_at.year
    this_year = staff_client.get(changelist, {"created_at__year": year}).content.decode()
    long_ago = staff_client.get(changelist, {"created_at__year": 2000}).content.decode()

    assert "alice-ci" in everything
    assert "bob-ci" in everything
    assert "alice-ci" in disabled
    assert "bob-ci" not in disabled
    assert "bob-ci" in bobs
    assert "alice-ci" not in bobs
    assert "alice-ci" in this_year
    assert "alice-ci" not in long_ago
    event = AuditEvent.objects.first()
    assert staff_client.get(reverse("admin:accounts_auditevent_add")).status_code == 403
    assert (
        staff_client.get(reverse("admin:accounts_auditevent_delete", args=[event.pk])).status_code
        == 403
    )
    page = staff_client.get(reverse("admin:accounts_auditevent_change", args=[event.pk]))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    staff_client.post(
        reverse("admin:accounts_auditevent_change", args=[event.pk]), {"target_label": "x"}
    )
    assert AuditEvent.objects.get(pk=event.pk).target_label != "x"


# --- The customer's own token events on the profile ---------------------------------


def test_the_profile_lists_the_users_own_token_events_newest_first(user_client, user):
    token, _key = token_create(user=user, name="ci", actor=user)
    token_set_enabled(token=token, is_enabled=False, actor=StaffFactory())
    token_create(user=user, name="from-a-command")
    token_create(user=UserFactory(), name="not-mine", actor=None)

    page = user_client.get(reverse("accounts:profile")).content.decode()

    card = page[page.index('id="recent-activity"') :].split("</table>")[0]
    rows = [
        re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[1:]
        for row in card.split("<tbody>")[1].split("<tr>")[1:]
    ]
    assert rows == [
        ["Token created", "from-a-command", "Comet"],
        ["Token disabled", "ci", "Comet staff"],
        ["Token created", "ci", "You"],
    ]
    assert "not-mine" not in page


def test_the_profile_says_when_there_is_no_activity_yet(user_client):
    page = user_client.get(reverse("accounts:profile")).content.decode()

    assert "Nothing yet. Creating, changing, disabling or deleting a token is listed here." in page
