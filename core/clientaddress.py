"""The client's address, decided once where a request enters (`comet/asgi.py`).

Behind a proxy the socket's peer is the proxy, and the client is named in
X-Forwarded-For, which anyone can write. The header is believed only from the
proxies in TRUSTED_PROXIES, and only as far as they vouch for it: read from the
right, the first address that is not itself a trusted proxy is the client (anything
left of it could have been written by the client). An entry there that is not an IP
address leaves the proxy's own address as the client's.

What comes out is always a canonical IP address that PostgreSQL's inet accepts, and
it replaces `scope["client"]`: the request log, token IP allow-lists, rate limits and
Django's REMOTE_ADDR all see the same, valid address.
"""

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# The address given when a request has none (a unix socket's peer, a server that
# gives no client): the unspecified address, since the log's column is NOT NULL.
UNKNOWN_ADDRESS = "0.0.0.0"  # noqa: S104 - a placeholder, never listened on

# X-Forwarded-For entries read from the right; a longer chain of trusted proxies is
# not believed (the proxy's own address is the client's).
MAX_HOPS = 32

# Longer than any address with a port and a zone id a proxy writes.
_LONGEST_ENTRY = 100

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _without_port(value: str) -> str:
    """Drop a port a proxy may add: `192.0.2.1:5678`, `[2001:db8::1]:443`."""
    if value.startswith("["):
        host, bracket, port = value[1:].partition("]")
        if bracket and (not port or (port[:1] == ":" and port[1:].isdigit())):
            return host
        return value
    host, colon, port = value.partition(":")
    if colon and ":" not in port and port.isdigit():
        return host
    return value


def address_clean(value: str) -> str | None:
    """Return `value` as a canonical IP address PostgreSQL's inet accepts, else None.

    An IPv6 zone id is dropped (`fe80::1%eth0` is `fe80::1`: inet has none), an
    IPv4-mapped IPv6 address is unmapped (`::ffff:192.0.2.1` is `192.0.2.1`, so the
    same client is one address in the log and IPv4 allow-lists match it), a port is
    dropped; anything else that is not an IP address in ASCII is refused.
    """
    value = value.strip(" \t")
    if not value or len(value) > _LONGEST_ENTRY or not value.isascii():
        return None
    try:
        address = ipaddress.ip_address(_without_port(value))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        if address.scope_id is not None:
            address = ipaddress.IPv6Address(int(address))
    return str(address)


@dataclass(frozen=True)
class TrustedProxies:
    """The proxies whose X-Forwarded-For is believed (TRUSTED_PROXIES)."""

    networks: tuple[Network, ...]
    every_peer: bool = False

    @classmethod
    def parse(cls, configured: Iterable[str]) -> "TrustedProxies":
        """Read IPs and CIDRs; `*` (uvicorn's spelling) makes every peer a proxy."""
        networks: list[Network] = []
        every_peer = False
        for entry in (entry.strip() for entry in configured):
            if entry == "*":
                every_peer = True
            elif entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ImproperlyConfigured(
                        f"TRUSTED_PROXIES: {entry!r} is not an IP address or network."
                    ) from None
        return cls(tuple(networks), every_peer)

    def vouch_for(self, address: str | None) -> bool:
        """Say whether `address` (canonical, or None for an unknown peer) is a proxy."""
        if self.every_peer:
            return True
        if address is None or not self.networks:
            return False
        return _in_networks(address, self.networks)


@functools.lru_cache(maxsize=4096)
def _in_networks(address: str, networks: tuple[Network, ...]) -> bool:
    parsed = ipaddress.ip_address(address)
    return any(parsed in network for network in networks)


@functools.cache
def _trusted_proxies(configured: tuple[str, ...]) -> TrustedProxies:
    return TrustedProxies.parse(configured)


def trusted_proxies() -> TrustedProxies:
    """Return TRUSTED_PROXIES, parsed once per value of the setting."""
    return _trusted_proxies(tuple(settings.TRUSTED_PROXIES))


def client_address(
    peer: str | None, forwarded_for: str | None, proxies: TrustedProxies | None = None
) -> str:
    """Return the client's address: always a canonical IP address (`address_clean`).

    `peer` is the socket's peer; `forwarded_for` the X-Forwarded-For entries, every
    header of that name joined with commas. From a peer that is not a trusted proxy
    the header is ignored. A peer that is not an address is UNKNOWN_ADDRESS.
    """
    proxies = trusted_proxies() if proxies is None else proxies
    return _client_address(address_clean(peer) if peer else None, forwarded_for, proxies)


def _client_address(
    peer_address: str | None, forwarded_for: str | None, proxies: TrustedProxies
) -> str:
    fallback = peer_address or UNKNOWN_ADDRESS
    if not forwarded_for or not proxies.vouch_for(peer_address):
        return fallback
    entries = forwarded_for.rsplit(",", MAX_HOPS)
    client = fallback
    for entry in reversed(entries[-MAX_HOPS:]):
        address = address_clean(entry)
        if address is None:
            return fallback
        if not proxies.vouch_for(address):
            return address
        client = address
    if len(entries) > MAX_HOPS:
        return fallback
    # Every entry is a trusted proxy: the left-most is the client (as uvicorn has it).
    return client


_PROTOCOLS = {"http": "http", "https": "https", "ws": "ws", "wss": "wss"}
_WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss"}


class ClientAddressMiddleware:
    """Put the client's address (`client_address`) into every request's scope.

    Also takes the scheme from X-Forwarded-Proto when a trusted proxy sent it, as
    uvicorn's --proxy-headers did (the site runs with --no-proxy-headers: this is
    the one place that believes a proxy).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        trusted_proxies()  # A mistyped proxy stops the server here, not a request.

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = scope_with_client(scope)
        await self.app(scope, receive, send)


def scope_with_client(scope: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of an http or websocket scope with its client address decided."""
    proxies = trusted_proxies()
    client = scope.get("client")
    peer_address = address_clean(str(client[0])) if client else None
    forwarded_for: list[bytes] = []
    forwarded_proto = None
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            forwarded_for.append(value)
        elif name == b"x-forwarded-proto":
            forwarded_proto = value
    header = b",".join(forwarded_for).decode("latin-1")
    address = _client_address(peer_address, header, proxies)
    changed: dict[str, Any] = {}
    if client is None or address != client[0]:
        # The peer's port stays with the peer's address; a client named by a proxy
        # has no known port (0).
        port = client[1] if client and address == peer_address else 0
        changed["client"] = (address, port)
    if forwarded_proto is not None and proxies.vouch_for(peer_address):
        scheme = _PROTOCOLS.get(forwarded_proto.decode("latin-1").strip().lower())
        if scheme and scope["type"] == "websocket":
            scheme = _WEBSOCKET_SCHEMES.get(scheme, scheme)
        if scheme:
            changed["scheme"] = scheme
    return {**scope, **changed} if changed else scope
