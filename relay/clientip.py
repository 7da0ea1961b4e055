"""The client's IP address, believing X-Forwarded-For only from configured proxies."""

import functools
import ipaddress

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def _trusted_networks(configured: tuple[str, ...]) -> tuple[Network, ...]:
    networks: list[Network] = []
    for entry in (entry.strip() for entry in configured):
        if entry == "*":  # uvicorn's spelling of "every peer is a proxy"
            networks += [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
        elif entry:
            networks.append(ipaddress.ip_network(entry, strict=False))
    return tuple(networks)


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def client_ip(peer: str, forwarded_for: bytes | None) -> str:
    """Return the client's address.

    From a trusted proxy, X-Forwarded-For is read from the right: the first address
    that is not itself a trusted proxy is the client (anything left of it could
    have been written by the client).
    """
    networks = _trusted_networks(tuple(settings.RELAY_TRUSTED_PROXIES))
    if not forwarded_for or not networks or not _is_trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in forwarded_for.decode("latin-1").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return hops[0] if hops else peer
