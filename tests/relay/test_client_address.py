"""A hostile X-Forwarded-For through a trusted proxy: answered, logged, charged, books closed.

The relay server of these tests runs behind the step that decides the client's
address (core/clientaddress.py), as comet/asgi.py serves it; the test client's
loopback address is the proxy.
"""

import json
import socket
import time
from io import StringIO

import httpx
import pytest
from django.core.management import call_command

from accounts.tokens import token_authenticate
from billing.models import Account
from core.clientaddress import UNKNOWN_ADDRESS
from logs.models import RequestLog
from models_catalog.selectors import model_price
from relay import upstream
from relay.app import call_charge
from relay.calls import Call
from relay.forwarding import Outcome
from relay.usage import Usage

from .conftest import MODEL, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
PROXY = "127.0.0.1"
FUNDS = 100_000_000  # funded_user's $100

# (X-Forwarded-For as the proxy passed it on, the client address it comes out as)
HOSTILE = {
    "markup": (b"<script>", PROXY),
    "an IPv6 zone id": (b"fe80::1%eth0", "fe80::1"),
    "a zone id on IPv4": (b"1.2.3.4%x", PROXY),
    "fullwidth digits": ("\uff11.\uff12.\uff13.\uff14".encode(), PROXY),
    "a NUL": (b"203.0.113.9\x00", PROXY),
    "an empty header": (b"", PROXY),
    "an empty entry": (b"203.0.113.9, , 127.0.0.1", PROXY),
    "an empty last entry": (b"203.0.113.9,", PROXY),
    "an IPv4-mapped address": (b"::ffff:203.0.113.9", "203.0.113.9"),
    "5000 entries of the proxy": (b", ".join([PROXY.encode()] * 5000), PROXY),
    "5000 entries, the last one good": (b"<script>, " * 4999 + b"203.0.113.9", "203.0.113.9"),
}


def send(relay_url, key, forwarded_for: bytes) -> httpx.Response:
    # Bytes uvicorn answers 400 to (a NUL) go hex-encoded (conftest.forwarded_for_from_hex).
    name = "x-test-forwarded-for-hex" if b"\x00" in forwarded_for else "x-forwarded-for"
    value = forwarded_for.hex().encode() if b"\x00" in forwarded_for else forwarded_for
    return httpx.post(
        f"{relay_url}/chat/completions",
        json=CHAT,
        headers=[(b"authorization", f"Bearer {key}".encode()), (name.encode(), value)],
        timeout=10,
    )


def assert_charged_exactly_the_logged_cost(user, return_grants) -> None:
    return_grants()
    logged = sum(RequestLog.objects.values_list("cost", flat=True))
    account = Account.objects.get(pk=user.pk)
    assert logged > 0
    assert (account.balance, account.reserved, account.used) == (FUNDS - logged, 0, logged)
    output = StringIO()
    call_command("reconcile", stdout=output)
    assert "no drift" in output.getvalue()


@pytest.mark.parametrize(("forwarded_for", "address"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_bad_address_from_a_trusted_proxy_is_served_logged_and_charged(
    relay_url,
    token_key,
    openai_channel,
    funded_user,
    return_grants,
    settings,
    forwarded_for,
    address,
):
    settings.TRUSTED_PROXIES = [PROXY]

    response = send(relay_url, token_key, forwarded_for)

    assert response.status_code == 200, response.text
    [log] = wait_for_logs(1)
    assert log.client_ip == address
    assert_charged_exactly_the_logged_cost(funded_user, return_grants)


def test_a_nul_uvicorn_refuses_is_not_served_and_costs_nothing(
    relay_url, token_key, openai_channel, funded_user, settings
):
    settings.TRUSTED_PROXIES = [PROXY]
    body = json.dumps(CHAT).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\n"
        + f"Authorization: Bearer {token_key}\r\n".encode()
        + b"X-Forwarded-For: 203.0.113.9\x00\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    host, port = httpx.URL(relay_url).host, httpx.URL(relay_url).port
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(request)
        answer = connection.makefile("rb").read()

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert RequestLog.objects.count() == 0
    account = Account.objects.get(pk=funded_user.pk)
    assert (account.balance, account.reserved, account.used) == (FUNDS, 0, 0)


@pytest.mark.parametrize("trusted", [[], ["10.0.0.0/8"]], ids=["no proxies", "other proxies"])
def test_the_same_headers_from_an_untrusted_peer_are_ignored(
    relay_url, token_key, openai_channel, funded_user, return_grants, settings, trusted
):
    settings.TRUSTED_PROXIES = trusted

    for forwarded_for, _address in HOSTILE.values():
        assert send(relay_url, token_key, forwarded_for).status_code == 200
    send(relay_url, token_key, b"203.0.113.9")

    logs = wait_for_logs(len(HOSTILE) + 1)
    assert [log.client_ip for log in logs] == [PROXY] * (len(HOSTILE) + 1)
    assert_charged_exactly_the_logged_cost(funded_user, return_grants)


@pytest.mark.parametrize(
    ("scope_client", "address"),
    [("fe80::1%eth0", "fe80::1"), ("<script>", UNKNOWN_ADDRESS), ("", UNKNOWN_ADDRESS)],
)
def test_the_log_row_gets_a_valid_address_even_without_the_entry_step(
    relay_server, token_key, scope_client, address
):
    """Served alone (benchmarks), the relay checks the address once more for the log row."""
    token = token_authenticate(token_key)
    price = model_price(model_name=MODEL, pricing_group_id=token.pricing_group_id)

    call = Call(
        request_id="alone",
        endpoint=upstream.CHAT,
        token=token,
        address=scope_client,
        headers={},
        body={},
        model=MODEL,
        stream=False,
        price=price,
        routes=[],
        started=time.perf_counter(),
    )

    cost, log = call_charge(
        call, Outcome(is_answered=True, usage=Usage(prompt_tokens=3, completion_tokens=2))
    )

    assert log.client_ip == address
    assert cost > 0
