"""Requests refused after the token is known are counted for the customer's logs.

Never forwarded and never charged: they are not requests (no log row, no charge,
no request count), but a customer debugging a 429 finds them (logs.models.Refusal).
"""

import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from accounts.models import Token
from billing.models import Account
from logs.data import RefusalData
from logs.models import Refusal, RequestLog
from logs.services import refusals_record
from tokens.services import token_create

from .conftest import MODEL

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def _counted(expected: int, timeout: float = 5) -> list[Refusal]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(Refusal.objects.order_by("second", "id"))
        if sum(row.count for row in rows) >= expected:
            return rows
        time.sleep(0.02)
    return list(Refusal.objects.order_by("second", "id"))


def _books(user_id: int) -> tuple:
    account = Account.objects.get(pk=user_id)
    tokens = list(Token.objects.filter(user_id=user_id).values_list("used", "request_count"))
    return account.balance, account.reserved, account.used, account.request_count, tokens


def test_a_flood_of_rate_limited_requests_is_counted_in_few_rows_and_charges_nothing(
    relay_url, openai_channel, funded_user, return_grants
):
    # Given a token allowed 2 requests a minute
    _token, key = token_create(user=funded_user, name="limited", rpm_limit=2)
    before = _books(funded_user.pk)

    # When 40 requests come within a second or two
    with httpx.Client(timeout=10) as client:
        statuses = Counter(
            client.post(
                f"{relay_url}/chat/completions",
                json=CHAT,
                headers={"authorization": f"Bearer {key}"},
            ).status_code
            for _ in range(40)
        )

    # Then 2 were served and 38 refused; the refusals are counted, one row per second
    assert statuses == {200: 2, 429: 38}
    rows = _counted(38)
    assert sum(row.count for row in rows) == 38
    assert len(rows) == len({row.second for row in rows}) <= 3
    assert {(row.status_code, row.error_code, row.model) for row in rows} == {
        (429, "rate_limit_exceeded", MODEL)
    }
    assert {row.token_name for row in rows} == {"limited"}
    # and only the 2 served are requests: logged, charged, counted
    assert RequestLog.objects.filter(user=funded_user).count() == 2
    return_grants()
    balance, reserved, used, request_count, _tokens = _books(funded_user.pk)
    assert request_count == before[3] + 2
    assert reserved == 0
    assert balance == before[0] - (used - before[2])


@pytest.mark.parametrize(
    ("body", "status", "code", "model"),
    [
        # Text in "model" that names no catalog model is the caller's, and is not kept.
        ({**CHAT, "model": "no-such-model"}, 404, "model_not_found", ""),
        ({"messages": []}, 400, "missing_model", ""),
    ],
)
def test_a_refusal_names_its_code_and_model_and_changes_no_balance(
    relay_url, openai_channel, funded_user, token_key, body, status, code, model
):
    before = _books(funded_user.pk)

    response = httpx.post(
        f"{relay_url}/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {token_key}"},
    )

    assert response.status_code == status
    [row] = _counted(1)
    assert (row.status_code, row.error_code, row.model, row.count) == (status, code, model, 1)
    assert row.user_id == funded_user.pk
    assert RequestLog.objects.count() == 0
    assert _books(funded_user.pk) == before


def test_a_token_out_of_quota_is_refused_with_402_and_counted(
    relay_url, openai_channel, funded_user
):
    _token, key = token_create(user=funded_user, name="spent", quota_remaining=0)
    before = _books(funded_user.pk)

    response = httpx.post(
        f"{relay_url}/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"}
    )

    assert response.status_code in (402, 429)
    [row] = _counted(1)
    assert (row.status_code, row.error_code) == (
        response.status_code,
        response.json()["error"]["code"],
    )
    assert _books(funded_user.pk) == before


def test_an_unknown_key_is_not_counted_for_anyone(
    relay_url, openai_channel, funded_user, relay_server
):
    response = httpx.post(
        f"{relay_url}/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-nope"}
    )

    # A refusal is counted before it is answered: had this one been, its count would
    # be waiting in the relay or written by now.
    assert response.status_code == 401
    assert relay_server.relay.refusals.pending == 0
    assert not Refusal.objects.exists()


def test_counts_add_up_and_outlive_their_token(funded_user, token_key):
    token = Token.objects.get(user=funded_user)
    second = datetime(2026, 12, 5, 8, 0, 1, tzinfo=UTC)
    refusal = RefusalData(
        second=second,
        user_id=funded_user.pk,
        token_id=token.pk,
        token_name=token.name,
        status_code=429,
        error_code="rate_limit_exceeded",
        model=MODEL,
        client_ip="203.0.113.9",
        count=3,
    )
    refusals_record([refusal])
    refusals_record([refusal])
    assert Refusal.objects.get().count == 6

    # A token deleted before its counts are written keeps them, by name
    token.delete()
    refusals_record([refusal])
    assert sorted(Refusal.objects.values_list("token_id", "token_name", "count")) == [
        (None, "tests", 3),
        (None, "tests", 6),
    ]
