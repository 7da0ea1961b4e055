"""Writes to accounts: the user's own settings, and what a changed user does to tokens."""

from typing import Any

from accounts.models import Token, User
from accounts.tokens import token_cache_invalidate

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


def user_set_notify_new_ip(*, user: User, is_enabled: bool) -> User:
    """Turn the "token used from a new IP address" email on or off."""
    if user.notify_new_ip != is_enabled:
        user.notify_new_ip = is_enabled
        user.save(update_fields=["notify_new_ip"])
    return user
