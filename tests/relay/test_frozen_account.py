"""A payment dispute freezes the account: the relay refuses with 403 and charges nothing."""

import httpx
import pytest

from billing.models import Account
from logs.models import RequestLog

from .conftest import MODEL

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_frozen_account_is_refused_with_403(
    relay_url, token_key, openai_channel, fake_upstream, funded_user
):
    Account.objects.filter(pk=funded_user.pk).update(is_frozen=True, frozen_reason="dp_1")
    before = Account.objects.get(pk=funded_user.pk)
    response = httpx.post(
        f"{relay_url}/chat/completions",
        headers={"authorization": f"Bearer {token_key}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (403, "account_frozen")
    assert "dispute" in error["message"]
    assert fake_upstream.app.stats.requests == 0
    assert RequestLog.objects.count() == 0
    after = Account.objects.get(pk=funded_user.pk)
    assert (after.balance, after.reserved) == (before.balance, 0)

    Account.objects.filter(pk=funded_user.pk).update(is_frozen=False, frozen_reason="")
    response = httpx.post(
        f"{relay_url}/chat/completions",
        headers={"authorization": f"Bearer {token_key}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert response.status_code == 200
