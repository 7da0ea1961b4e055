"""API token keys and the token lookup the relay calls on every request.

A key is `sk-` + 33 base62 characters (192 random bits from `secrets`) + a
6-character base62 CRC-32 of those characters. The checksum lets a mistyped or
made-up key be refused without a cache or database query. Only the SHA-256 of the
key is stored: keys carry 192 random bits, so a fast hash is safe to look up by.

Lookups go through the cache (Redis: shared by every process) and then the
database. A change to a token deletes its cache entry after the commit and sets
a short-lived "changed" marker; a reader that filled the cache concurrently checks
the marker after writing and deletes its own (possibly stale) entry. So a disabled,
edited or deleted token is seen by every process as soon as the change commits,
well within a second.
"""

import hashlib
import ipaddress
import secrets
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from core.db import run_in_database_thread

KEY_PREFIX = "sk-"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_BYTES = 24  # 192 bits
_BODY_LENGTH = 33  # ceil(192 / log2(62))
_CHECKSUM_LENGTH = 6  # ceil(32 / log2(62))
KEY_LENGTH = len(KEY_PREFIX) + _BODY_LENGTH + _CHECKSUM_LENGTH
_ALPHABET_SET = frozenset(_ALPHABET)

CACHE_SECONDS = 300
_CHANGED_MARKER_SECONDS = 10

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(_ALPHABET[remainder])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CHECKSUM_LENGTH)


def key_generate() -> str:
    """Return a new random key (shown once to its owner, never stored)."""
    body = _base62(int.from_bytes(secrets.token_bytes(_RANDOM_BYTES), "big"), _BODY_LENGTH)
    return f"{KEY_PREFIX}{body}{_checksum(body)}"


def key_is_well_formed(raw_key: str) -> bool:
    """Return whether `raw_key` has the shape and checksum of a key we issue (no I/O)."""
    if len(raw_key) != KEY_LENGTH or not raw_key.startswith(KEY_PREFIX):
        return False
    body = raw_key[len(KEY_PREFIX) : -_CHECKSUM_LENGTH]
    if not _ALPHABET_SET.issuperset(raw_key[len(KEY_PREFIX) :]):
        return False
    return secrets.compare_digest(_checksum(body), raw_key[-_CHECKSUM_LENGTH:])


def key_hash(raw_key: str) -> str:
    """Return the stored form of a key: its SHA-256 in hex."""
    return hashlib.sha256(raw_key.encode("ascii")).hexdigest()


def key_display_parts(raw_key: str) -> tuple[str, str]:
    """Return (display prefix, last 4 characters) of a key."""
    return raw_key[: len(KEY_PREFIX) + 4], raw_key[-4:]


def networks_parse(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Return IP addresses / CIDRs as networks; raise ValueError naming a bad one."""
    networks = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as error:
            raise ValueError(
                gettext("“%(value)s” is not an IP address or CIDR network.") % {"value": text}
            ) from error
    return tuple(networks)


@dataclass(frozen=True)
class TokenInfo:
    """What the relay needs to know about a token, as cached.

    `quota_remaining` is a snapshot (None = unlimited, 0 = query-only): the
    credit meter (`billing.meter`) is the authority on spending.
    """

    id: int
    user_id: int
    name: str
    is_enabled: bool
    expires_at: datetime | None
    quota_remaining: int | None
    allowed_models: frozenset[str]
    allowed_networks: tuple[IPNetwork, ...]
    concurrency_limit: int = 100
    rpm_limit: int | None = None
    pricing_group_id: int | None = None
    # The account's own limits (None: its line's; `models_catalog.selectors.account_limits`).
    account_concurrency_limit: int | None = None
    account_rpm_limit: int | None = None
    account_tpm_limit: int | None = None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models

    def allows_ip(self, ip: str) -> bool:
        if not self.allowed_networks:
            return True
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.allowed_networks)


def _cache_key(hashed: str) -> str:
    return f"token:{hashed}"


def _changed_key(hashed: str) -> str:
    return f"token-changed:{hashed}"


def _token_info_load(hashed: str) -> TokenInfo | None:
    from accounts.models import Token

    row = (
        Token.objects.filter(key_hash=hashed, is_enabled=True, user__is_active=True)
        .values(
            "id",
            "user_id",
            "name",
            "is_enabled",
            "expires_at",
            "quota_remaining",
            "allowed_models",
            "allowed_networks",
            "concurrency_limit",
            "rpm_limit",
            "user__pricing_group_id",
            "user__concurrency_limit",
            "user__rpm_limit",
            "user__tpm_limit",
        )
        .first()
    )
    if row is None:
        return None
    return TokenInfo(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        is_enabled=row["is_enabled"],
        expires_at=row["expires_at"],
        quota_remaining=row["quota_remaining"],
        allowed_models=frozenset(row["allowed_models"] or ()),
        allowed_networks=networks_parse(row["allowed_networks"] or ()),
        concurrency_limit=row["concurrency_limit"],
        rpm_limit=row["rpm_limit"],
        pricing_group_id=row["user__pricing_group_id"],
        account_concurrency_limit=row["user__concurrency_limit"],
        account_rpm_limit=row["user__rpm_limit"],
        account_tpm_limit=row["user__tpm_limit"],
    )


def token_authenticate(raw_key: str) -> TokenInfo | None:
    """Return the enabled token of `raw_key`, or None for a bad, unknown or disabled key.

    A key with a bad checksum costs no cache or database query. Expiry is not
    checked here: the caller says "expired" rather than "unknown" (`is_expired`).
    """
    if not key_is_well_formed(raw_key):
        return None
    hashed = key_hash(raw_key)
    info = cache.get(_cache_key(hashed))
    if info is None:
        info = _token_info_load(hashed)
        if info is None:
            return None
        cache.set(_cache_key(hashed), info, CACHE_SECONDS)
        # A change may have committed between our read and our write: drop ours.
        if cache.get(_changed_key(hashed)) is not None:
            cache.delete(_cache_key(hashed))
    return info if info.is_enabled else None


async def atoken_authenticate(raw_key: str) -> TokenInfo | None:
    """Async twin of `token_authenticate` for the ASGI relay."""
    if not key_is_well_formed(raw_key):
        return None
    hashed = key_hash(raw_key)
    info = await cache.aget(_cache_key(hashed))
    if info is None:
        info = await run_in_database_thread(_token_info_load, hashed)
        if info is None:
            return None
        await cache.aset(_cache_key(hashed), info, CACHE_SECONDS)
        if await cache.aget(_changed_key(hashed)) is not None:
            await cache.adelete(_cache_key(hashed))
    return info if info.is_enabled else None


def token_cache_invalidate(hashed: str) -> None:
    """Forget the cached token once the current transaction commits."""

    def forget() -> None:
        cache.set(_changed_key(hashed), 1, _CHANGED_MARKER_SECONDS)
        cache.delete(_cache_key(hashed))

    transaction.on_commit(forget)
