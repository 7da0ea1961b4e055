"""Writes to accounts: API tokens and the user's own settings."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Token, User
from accounts.tokens import (
    key_display_parts,
    key_generate,
    key_hash,
    networks_parse,
    token_cache_invalidate,
)

# A user save that changes only these fields cannot change what a token allows.
_FIELDS_TOKENS_IGNORE = frozenset({"last_login", "password", "display_name", "notify_new_ip"})


def token_cache_forget_for_user(
    sender: Any, instance: User, created: bool, update_fields: Any = None, **kwargs: Any
) -> None:
    """Forget the cached tokens of a user who changed (a post_save receiver)."""
    if created or kwargs.get("raw"):
        return
    if update_fields is not None and set(update_fields) <= _FIELDS_TOKENS_IGNORE:
        return
    for hashed in Token.objects.filter(user=instance).values_list("key_hash", flat=True):
        token_cache_invalidate(hashed)


def _clean_models(models: Sequence[str]) -> list[str]:
    return sorted({name.strip() for name in models if name.strip()})


def _clean_networks(networks: Sequence[str]) -> list[str]:
    try:
        return [str(network) for network in networks_parse(networks)]
    except ValueError as error:
        raise ValidationError({"allowed_networks": str(error)}) from error


def _check_quota(quota_remaining: int | None) -> None:
    if quota_remaining is not None and quota_remaining < 0:
        raise ValidationError({"quota_remaining": "A quota cannot be negative."})


def token_create(
    *,
    user: User,
    name: str,
    quota_remaining: int | None = None,
    expires_at: datetime | None = None,
    allowed_models: Sequence[str] = (),
    allowed_networks: Sequence[str] = (),
    concurrency_limit: int = 100,
    rpm_limit: int | None = None,
) -> tuple[Token, str]:
    """Create a token and return it with its key: the only time the key exists in full."""
    _check_quota(quota_remaining)
    networks = _clean_networks(allowed_networks)
    raw_key = key_generate()
    prefix, last4 = key_display_parts(raw_key)
    limit = settings.COMET_TOKENS_PER_USER
    with transaction.atomic():
        # Lock the owner so two concurrent creations cannot both pass the limit
        # (no_key: the request log's foreign-key checks on the user are not blocked).
        User.objects.select_for_update(no_key=True).filter(pk=user.pk).first()
        if Token.objects.filter(user=user).count() >= limit:
            raise ValidationError(
                f"You already have {limit} tokens, the most an account may have. "
                "Delete one you no longer use first."
            )
        token = Token.objects.create(
            user=user,
            name=name.strip(),
            key_hash=key_hash(raw_key),
            key_prefix=prefix,
            key_last4=last4,
            quota_remaining=quota_remaining,
            expires_at=expires_at,
            allowed_models=_clean_models(allowed_models),
            allowed_networks=networks,
            concurrency_limit=concurrency_limit,
            rpm_limit=rpm_limit,
        )
    return token, raw_key


def token_update(
    *,
    token: Token,
    name: str,
    quota_remaining: int | None,
    expires_at: datetime | None,
    allowed_models: Sequence[str],
    allowed_networks: Sequence[str],
    concurrency_limit: int,
    rpm_limit: int | None,
) -> Token:
    """Change a token's settings; every process sees the change once it commits."""
    _check_quota(quota_remaining)
    networks = _clean_networks(allowed_networks)
    with transaction.atomic():
        locked = Token.objects.select_for_update().get(pk=token.pk)
        if quota_remaining is not None and quota_remaining < locked.reserved:
            raise ValidationError(
                {
                    "quota_remaining": "Requests in flight hold part of this quota; "
                    "set it to at least what they hold or try again in a moment."
                }
            )
        locked.name = name.strip()
        locked.quota_remaining = quota_remaining
        locked.expires_at = expires_at
        locked.allowed_models = _clean_models(allowed_models)
        locked.allowed_networks = networks
        locked.concurrency_limit = concurrency_limit
        locked.rpm_limit = rpm_limit
        locked.save(
            update_fields=[
                "name",
                "quota_remaining",
                "expires_at",
                "allowed_models",
                "allowed_networks",
                "concurrency_limit",
                "rpm_limit",
                "updated_at",
            ]
        )
        token_cache_invalidate(locked.key_hash)
    return locked


def token_set_enabled(*, token: Token, is_enabled: bool) -> Token:
    """Enable or disable a token; a disabled token is refused by every process at once."""
    with transaction.atomic():
        Token.objects.filter(pk=token.pk).update(is_enabled=is_enabled, updated_at=timezone.now())
        token_cache_invalidate(token.key_hash)
    token.refresh_from_db()
    return token


def user_set_notify_new_ip(*, user: User, is_enabled: bool) -> User:
    """Turn the "token used from a new IP address" email on or off."""
    if user.notify_new_ip != is_enabled:
        user.notify_new_ip = is_enabled
        user.save(update_fields=["notify_new_ip"])
    return user
