"""Hostile query strings and ids on the pages this round added: a 4xx or a page, never a 5xx."""

import pytest
from django.urls import reverse

from tokens.services import token_create

pytestmark = pytest.mark.django_db

ODD = ["%00", "%EF%BF%BD", "1e309", "%D9%A3", "-1", "9" * 40, "%ED%A0%80", "[]", "' OR 1=1"]


@pytest.mark.parametrize("value", ODD)
@pytest.mark.parametrize(
    "path",
    [
        "/recharge/?amount={}",
        "/recharge/?cancelled={}",
        "/logs/?status=refused&token={}",
        "/logs/?status={}",
        "/logs/charts/errors.json?window={}",
        "/relay-api/?x={}",
        "/tokens/new/?x={}",
    ],
)
def test_odd_query_values_never_break_a_page(user_client, path, value):
    response = user_client.get(path.format(value))

    assert response.status_code < 500


@pytest.mark.parametrize("token_id", ["0", "99999999999999999999", "%D9%A3"])
def test_rolling_a_token_that_is_not_yours_or_not_a_token_is_404(user_client, token_id):
    response = user_client.get(f"/tokens/{token_id}/roll/")

    assert response.status_code in (404, 302)


def test_rolling_a_deleted_token_is_404_not_500(user, user_client):
    token, _key = token_create(user=user, name="gone")
    url = reverse("tokens:roll", args=[token.pk])
    token.delete()

    assert user_client.post(url).status_code in (404, 302)
