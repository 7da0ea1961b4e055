"""A token's limits can only be lower than (or equal to) its account's."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import translation

from accounts.models import AuditEvent, Token
from accounts.services import user_line_set
from tests.tokens.test_api import _signed_in_now
from tests.tokens.test_views import _create_form
from tokens.services import token_create, token_update

pytestmark = pytest.mark.django_db


def _grant(user, *, concurrency=None, rpm=None):
    user_line_set(
        user=user,
        pricing_group_id=None,
        concurrency_limit=concurrency,
        rpm_limit=rpm,
        tpm_limit=None,
        actor=None,
    )


def test_the_form_refuses_a_concurrency_above_the_accounts_with_a_clear_message(user_client, user):
    # Given an account on the default line: 100 in flight
    _signed_in_now(user_client, user)

    # When the customer asks for 10,000 (exactly 100 is allowed)
    refused = user_client.post(
        reverse("tokens:create"), _create_form(user, concurrency_limit="10000")
    )
    at_limit = user_client.post(
        reverse("tokens:create"), _create_form(user, concurrency_limit="100")
    )

    # Then the form says why, next to the field, and creates nothing for it
    assert refused.status_code == 400
    html = refused.content.decode()
    assert "Your account allows at most 100 requests in flight" in html
    assert "Contact support" in html
    assert at_limit.status_code == 201
    assert list(Token.objects.values_list("concurrency_limit", flat=True)) == [100]


def test_the_form_refuses_rpm_above_the_accounts_and_says_so_in_chinese(user_client, user):
    _grant(user, rpm=60)
    _signed_in_now(user_client, user)

    with translation.override("zh-hans"):
        refused = user_client.post(
            reverse("tokens:create"),
            _create_form(user, rpm_limit="61"),
            HTTP_ACCEPT_LANGUAGE="zh-hans",
        )

    assert refused.status_code == 400
    assert "60" in refused.content.decode()
    assert "你的账户每分钟最多允许 60 个请求" in refused.content.decode()
    assert not Token.objects.exists()


def test_the_edit_form_refuses_raising_above_the_account_but_keeps_an_old_value(user_client, user):
    # Given a token at 100, then the account lowered to 10 by an admin
    token, _key = token_create(user=user, name="old")
    _grant(user, concurrency=10)
    form = {
        "name": "renamed",
        "quota": "",
        "expires_at": "",
        "allowed_models": "",
        "allowed_networks": "",
        "rpm_limit": "",
    }

    # When the customer renames it keeping 100, then tries 50
    kept = user_client.post(
        reverse("tokens:edit", args=[token.pk]), form | {"concurrency_limit": "100"}
    )
    raised = user_client.post(
        reverse("tokens:edit", args=[token.pk]), form | {"concurrency_limit": "50"}
    )

    # Then the rename is saved (the relay applies the lower of the two), the raise is not
    assert kept.status_code == 302
    assert raised.status_code == 400
    assert "at most 10 requests in flight" in raised.content.decode()
    token.refresh_from_db()
    assert (token.name, token.concurrency_limit) == ("renamed", 100)


def test_the_api_and_the_service_refuse_too(user_client, user):
    _grant(user, concurrency=20)
    _signed_in_now(user_client, user)

    response = user_client.post(
        "/api/tokens/",
        {"name": "ci", "concurrency_limit": 21},
        content_type="application/json",
    )
    default = user_client.post("/api/tokens/", {"name": "ci"}, content_type="application/json")

    assert response.status_code == 400
    assert "at most 20 requests in flight" in response.content.decode()
    # Without a limit, a new token gets 100 or the account's if lower
    assert default.status_code == 201
    assert default.json()["concurrency_limit"] == 20
    token = Token.objects.get()
    with pytest.raises(ValidationError):
        token_update(
            token=token,
            name="ci",
            quota_remaining=None,
            expires_at=None,
            allowed_models=[],
            allowed_networks=[],
            concurrency_limit=21,
            rpm_limit=None,
        )
    assert Token.objects.get().concurrency_limit == 20
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_CHANGED).exists()
