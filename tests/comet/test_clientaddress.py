"""The client's address, decided where a request enters: always one PostgreSQL's inet accepts."""

import asyncio
import ipaddress
import re
from pathlib import Path

import httpx
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.signals import user_logged_in
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from core.clientaddress import (
    MAX_HOPS,
    UNKNOWN_ADDRESS,
    ClientAddressMiddleware,
    TrustedProxies,
    address_clean,
    client_address,
)
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tokens.services import token_create

PROXY = "127.0.0.1"
FULLWIDTH = "\uff11.\uff12.\uff13.\uff14"  # 1.2.3.4 in fullwidth digits
BEHIND_LOOPBACK = TrustedProxies.parse([PROXY])
NOBODY = TrustedProxies.parse([])

# What a client may put left of the proxy's entry, and what it comes out as.
HOSTILE_ENTRIES = [
    ("<script>", None),
    ("fe80::1%eth0", "fe80::1"),
    ("1.2.3.4%x", None),
    (FULLWIDTH, None),
    ("\u0661.\u0662.\u0663.\u0664", None),  # Arabic-Indic digits
    ("1.2.3.4\x00", None),
    ("\x00", None),
    ("", None),
    ("::ffff:203.0.113.9", "203.0.113.9"),
    ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
    ("203.0.113.9:5678", "203.0.113.9"),
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("[2001:db8::1", None),
    ("203.0.113.9:http", None),
    ("0x7f.0.0.1", None),
    ("01.2.3.4", None),
    ("203.0.113.9/24", None),
    ("fe80::1%", None),
    ("unix:/run/comet.sock", None),
    ("2001:db8::1%" + "x" * 200, None),
]


def is_inet(value: str) -> bool:
    """Say whether `value` is a canonical address PostgreSQL's inet accepts as it is."""
    if "%" in value:
        return False
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return str(address) == value


@pytest.mark.parametrize(("entry", "address"), HOSTILE_ENTRIES)
def test_an_entry_is_a_canonical_address_or_nothing(entry, address):
    assert address_clean(entry) == address


@pytest.mark.parametrize(("entry", "address"), HOSTILE_ENTRIES)
def test_from_a_trusted_proxy_a_bad_entry_leaves_the_proxys_address(entry, address):
    assert client_address(PROXY, entry, BEHIND_LOOPBACK) == (address or PROXY)
    # What the client wrote left of a good entry is never read.
    assert client_address(PROXY, f"{entry}, 198.51.100.7", BEHIND_LOOPBACK) == "198.51.100.7"


def test_the_header_is_read_from_the_right_to_the_first_hop_that_is_not_a_proxy():
    proxies = TrustedProxies.parse(["127.0.0.1", "10.0.0.0/8"])
    header = "192.0.2.1, 198.51.100.7, 10.1.1.1, 10.2.2.2"
    assert client_address(PROXY, header, proxies) == "198.51.100.7"
    # A bad entry between the proxies is not skipped: the peer stands for the client.
    assert client_address(PROXY, "198.51.100.7, <script>, 10.1.1.1", proxies) == PROXY
    assert client_address(PROXY, "198.51.100.7, , 10.1.1.1", proxies) == PROXY
    # Every entry a proxy: the left-most is the client.
    assert client_address(PROXY, "10.3.3.3, 10.2.2.2", proxies) == "10.3.3.3"


def test_an_untrusted_peer_s_header_is_ignored():
    for header in ("198.51.100.7", "<script>", "fe80::1%eth0"):
        assert client_address("192.0.2.10", header, NOBODY) == "192.0.2.10"
        assert client_address("192.0.2.10", header, BEHIND_LOOPBACK) == "192.0.2.10"


def test_every_peer_is_a_proxy_with_a_star():
    every = TrustedProxies.parse(["*"])
    assert client_address("192.0.2.10", "198.51.100.7, 10.1.1.1", every) == "198.51.100.7"
    assert client_address(None, "198.51.100.7", every) == "198.51.100.7"
    assert client_address(None, "<script>", every) == UNKNOWN_ADDRESS


def test_a_peer_that_is_not_an_address_is_the_unknown_address():
    for peer in (None, "", "unix:/run/comet.sock", "<script>", "fe80::1%eth0"):
        expected = "fe80::1" if peer == "fe80::1%eth0" else UNKNOWN_ADDRESS
        assert client_address(peer, None, NOBODY) == expected
        assert client_address(peer, "198.51.100.7", BEHIND_LOOPBACK) == expected


def test_a_chain_longer_than_the_hops_read_is_not_believed():
    assert client_address(PROXY, ", ".join([PROXY] * 5000), BEHIND_LOOPBACK) == PROXY
    longest = ", ".join(["198.51.100.7"] + [PROXY] * (MAX_HOPS - 1))
    assert client_address(PROXY, longest, BEHIND_LOOPBACK) == "198.51.100.7"
    too_long = ", ".join(["198.51.100.7"] + [PROXY] * MAX_HOPS)
    assert client_address(PROXY, too_long, BEHIND_LOOPBACK) == PROXY
    hostile = ", ".join(["<script>"] * 4999 + ["198.51.100.7"])
    assert client_address(PROXY, hostile, BEHIND_LOOPBACK) == "198.51.100.7"


def test_a_trusted_proxy_that_is_not_an_address_stops_the_server():
    with pytest.raises(ImproperlyConfigured, match=r"'proxy\.internal'"):
        TrustedProxies.parse(["10.0.0.0/8", "proxy.internal"])


entries = st.one_of(
    st.text(max_size=60),
    st.ip_addresses().map(str),
    st.builds(lambda ip, zone: f"{ip}%{zone}", st.ip_addresses(), st.text(max_size=10)),
    st.builds(lambda ip, port: f"[{ip}]:{port}", st.ip_addresses(v=6), st.text(max_size=6)),
    st.builds(lambda ip, port: f"{ip}:{port}", st.ip_addresses(v=4), st.text(max_size=6)),
    st.sampled_from([entry for entry, _address in HOSTILE_ENTRIES]),
)
headers = st.one_of(
    st.none(),
    st.text(),
    st.lists(entries, max_size=40).map(", ".join),
    st.lists(entries, max_size=5).map(",".join),
)
peers = st.one_of(st.none(), st.ip_addresses().map(str), entries)
every_trust = st.sampled_from(
    [
        NOBODY,
        BEHIND_LOOPBACK,
        TrustedProxies.parse(["*"]),
        TrustedProxies.parse(["0.0.0.0/0", "::/0"]),
        TrustedProxies.parse(["10.0.0.0/8", "2001:db8::/32", "::1"]),
    ]
)


@given(peer=peers, header=headers, proxies=every_trust)
@example(peer=PROXY, header="fe80::1%eth0", proxies=BEHIND_LOOPBACK)
@example(peer="fe80::1%eth0", header=None, proxies=NOBODY)
@example(peer=PROXY, header="::ffff:1.2.3.4", proxies=BEHIND_LOOPBACK)
def test_whatever_the_header_the_address_is_one_inet_accepts(peer, header, proxies):
    address = client_address(peer, header, proxies)
    assert is_inet(address), address
    # It is the peer's, or one named in the header (never made up), or unknown.
    named = {address_clean(entry) for entry in (header or "").split(",")}
    assert address in {address_clean(peer or ""), UNKNOWN_ADDRESS} | named
    # From a peer that is not a proxy the header does not matter.
    if not proxies.vouch_for(address_clean(peer or "")):
        assert address == client_address(peer, None, proxies)


@pytest.mark.django_db
@hypothesis_settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(peer=peers, header=headers, proxies=every_trust)
def test_postgresql_casts_every_address_to_inet(peer, header, proxies):
    address = client_address(peer, header, proxies)
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::inet = %s::inet", [address, address])
        assert cursor.fetchone() == (True,)


# --- The ASGI step -------------------------------------------------------------


def scope_seen(headers, *, client=(PROXY, 50000), scope_type="http"):
    """Run a request's scope through the step; return the scope the app was given."""
    seen = {}

    async def app(scope, receive, send):
        seen.update(scope)

    scope = {"type": scope_type, "path": "/", "headers": headers, "scheme": "http"}
    if client is not None:
        scope["client"] = client
    asyncio.run(ClientAddressMiddleware(app)(scope, None, None))
    return seen


def test_the_step_puts_the_decided_address_into_the_scope(settings):
    settings.TRUSTED_PROXIES = [PROXY]
    seen = scope_seen([(b"x-forwarded-for", b"fe80::1%eth0")])
    assert seen["client"] == ("fe80::1", 0)
    # Several X-Forwarded-For headers are one list, in order.
    two = [(b"x-forwarded-for", b"198.51.100.7"), (b"x-forwarded-for", b"<script>")]
    assert scope_seen(two)["client"] == (PROXY, 50000)
    assert scope_seen([(b"x-forwarded-for", b"1.2.3.4\x00")])["client"] == (PROXY, 50000)
    assert scope_seen([(b"x-forwarded-for", FULLWIDTH.encode())])["client"] == (PROXY, 50000)
    assert scope_seen([], client=None)["client"] == (UNKNOWN_ADDRESS, 0)
    assert scope_seen([], client=("unix:/run/comet.sock", 0))["client"] == (UNKNOWN_ADDRESS, 0)


def test_the_step_ignores_an_untrusted_peer_s_headers(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    seen = scope_seen([(b"x-forwarded-for", b"198.51.100.7"), (b"x-forwarded-proto", b"https")])
    assert (seen["client"], seen["scheme"]) == ((PROXY, 50000), "http")


def test_the_step_takes_the_scheme_from_a_trusted_proxy(settings):
    settings.TRUSTED_PROXIES = [PROXY]
    assert scope_seen([(b"x-forwarded-proto", b"https")])["scheme"] == "https"
    assert scope_seen([(b"x-forwarded-proto", b"gopher")])["scheme"] == "http"
    seen = scope_seen([(b"x-forwarded-proto", b"https")], scope_type="websocket")
    assert seen["scheme"] == "wss"


def test_the_site_runs_without_uvicorn_s_proxy_headers():
    """Only the entry step believes a proxy: uvicorn's rewrite takes any value as the client."""
    procfile = (Path(django_settings.BASE_DIR) / "Procfile").read_text()
    [web] = [line for line in procfile.splitlines() if line.startswith("web:")]
    assert "--no-proxy-headers" in web
    assert "--proxy-headers" not in web.replace("--no-proxy-headers", "")


# --- Django behind the step (comet.asgi) -------------------------------------------


def through_the_site(requests, *, peer=PROXY):
    """Send requests to comet.asgi's application as a proxy at `peer` would."""
    from comet.asgi import application

    async def send_all():
        transport = httpx.ASGITransport(app=application, client=(peer, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return [await request(client) for request in requests]

    return asyncio.run(send_all())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("forwarded_for", "address"),
    [("<script>", PROXY), ("fe80::1%eth0", "fe80::1"), ("198.51.100.7, 127.0.0.1", "198.51.100.7")],
)
def test_signing_in_sees_the_decided_address(settings, forwarded_for, address):
    settings.TRUSTED_PROXIES = [PROXY]
    user = UserFactory()
    seen = []

    def record(sender, request, user, **kwargs):
        seen.append(request.META["REMOTE_ADDR"])

    async def sign_in(client):
        page = await client.get("/accounts/login/", headers={"x-forwarded-for": forwarded_for})
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        return await client.post(
            "/accounts/login/",
            data={"login": user.email, "password": DEFAULT_PASSWORD},
            headers={"x-forwarded-for": forwarded_for, "x-csrftoken": token},
        )

    user_logged_in.connect(record)
    try:
        [response] = through_the_site([sign_in])
    finally:
        user_logged_in.disconnect(record)

    assert response.status_code == 302, response.text[:300]
    assert seen == [address]


@pytest.mark.django_db(transaction=True)
def test_balance_queries_are_counted_per_decided_address(settings, monkeypatch):
    settings.TRUSTED_PROXIES = [PROXY]
    monkeypatch.setattr("billing.views.QUOTA_QUERIES_PER_MINUTE", 5)
    _token, key = token_create(user=UserFactory(), name="q")

    def query(forwarded_for):
        headers = {"authorization": f"Bearer {key}", "x-forwarded-for": forwarded_for}
        return lambda client: client.get("/user/quota", headers=headers)

    responses = through_the_site([query("<script>"), query("fe80::1%eth0"), query("fe80::1%eth1")])

    assert [response.status_code for response in responses] == [200, 200, 200]
    assert cache.get(f"quota-query:{PROXY}") == 1
    assert cache.get("quota-query:fe80::1") == 2
    assert cache.get("quota-query:<script>") is None
