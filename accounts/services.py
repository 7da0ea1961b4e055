"""Writes to accounts: the user's own settings, what a changed user does to tokens, and
the audit log."""

from typing import Any

from django.conf import settings
from django.db import models, transaction

from accounts.models import AUDIT_LABEL_LENGTH, AuditEvent, Token, User
from accounts.timezones import is_time_zone
from accounts.tokens import token_cache_invalidate


class AuditOutsideTransaction(RuntimeError):
    """`audit_record` was called outside a transaction: its row could outlive the change."""


def audit_record(
    *,
    action: AuditEvent.Action,
    target: models.Model,
    label: str = "",
    user_id: int | None = None,
    actor: User | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write the audit row of a change, in the transaction that makes the change.

    `target` is the object changed (still holding its id when it is being deleted),
    `label` its short name for people (never a key or a secret), `user_id` whose
    account it concerns, `actor` who did it (None: the system, saying why in
    `detail`). Called outside a transaction it raises `AuditOutsideTransaction`:
    a change and its row commit together or not at all.
    """
    if not transaction.get_connection().in_atomic_block:
        raise AuditOutsideTransaction(f"{action} recorded outside a transaction")
    return AuditEvent.objects.create(
        action=action,
        target_type=target._meta.label_lower,
        target_id=target.pk,
        target_label=label[:AUDIT_LABEL_LENGTH],
        user_id=user_id,
        actor=actor,
        detail=detail or {},
    )


# A user save that changes only these fields cannot change what a token allows.
_FIELDS_TOKENS_IGNORE = frozenset(
    {"last_login", "password", "display_name", "notify_new_ip", "language", "time_zone"}
)


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


def user_set_language(*, user: User, language: str) -> User:
    """Save the language the user's pages are shown in; "" follows the browser.

    Raises ValueError for a code not in LANGUAGES.
    """
    if language and language not in dict(settings.LANGUAGES):
        raise ValueError(f"unknown language {language!r}")
    if user.language != language:
        user.language = language
        user.save(update_fields=["language"])
    return user


def user_set_time_zone(*, user: User, time_zone: str) -> User:
    """Save the IANA time zone the user reads times in (the profile's choice).

    Raises ValueError for a name that is not one of `accounts.timezones.time_zone_names()`.
    """
    if not is_time_zone(time_zone):
        raise ValueError("unknown time zone")
    if user.time_zone != time_zone:
        user.time_zone = time_zone
        user.save(update_fields=["time_zone"])
    return user


def user_set_browser_time_zone(*, user: User, time_zone: str) -> bool:
    """Store the zone the user's browser reports, if the user has none yet; return whether
    it was stored.

    One conditional UPDATE: a zone chosen on the profile (even in another tab, meanwhile)
    is never overwritten, and a second report changes nothing. Raises ValueError for a
    name that is not a known zone.
    """
    if not is_time_zone(time_zone):
        raise ValueError("unknown time zone")
    stored = User.objects.filter(pk=user.pk, time_zone="").update(time_zone=time_zone)
    if stored:
        user.time_zone = time_zone
    return bool(stored)


# What an admin grants an account: its line and its own limits (None: the line's).
LINE_FIELDS = ("pricing_group", "concurrency_limit", "rpm_limit", "tpm_limit")


def _line_name(user: User) -> str | None:
    group = user.pricing_group
    return group.name if group is not None else None


def user_line_set(
    *,
    user: User,
    pricing_group_id: int | None,
    concurrency_limit: int | None,
    rpm_limit: int | None,
    tpm_limit: int | None,
    actor: User | None,
) -> bool:
    """Grant `user` a line (None: the default one) and their own limits, audited.

    A limit left None takes the line's. Only what changed is written, with one audit
    row naming each change as [old, new]; return whether anything changed. Every
    process sees the change within a second: the user's tokens are forgotten from the
    cache when it commits (`token_cache_forget_for_user`).
    """
    for name, value in (
        ("concurrency_limit", concurrency_limit),
        ("rpm_limit", rpm_limit),
        ("tpm_limit", tpm_limit),
    ):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1 (or None for the line's)")
    with transaction.atomic():
        locked = User.objects.select_for_update(no_key=True).get(pk=user.pk)
        wanted = {
            "pricing_group_id": pricing_group_id,
            "concurrency_limit": concurrency_limit,
            "rpm_limit": rpm_limit,
            "tpm_limit": tpm_limit,
        }
        changes: dict[str, list[Any]] = {
            field.removesuffix("_id"): [getattr(locked, field), value]
            for field, value in wanted.items()
            if getattr(locked, field) != value
        }
        if not changes:
            return False
        old_line = _line_name(locked)
        for field, value in wanted.items():
            setattr(locked, field, value)
        if "pricing_group" in changes:
            # Named, not numbered: the audit log outlives renumbering (None: the default).
            changes["pricing_group"] = [old_line, _line_name(locked)]
        locked.save(update_fields=[*(field.removesuffix("_id") for field in wanted)])
        audit_record(
            action=AuditEvent.Action.ACCOUNT_LINE_CHANGED,
            target=locked,
            label=locked.email,
            user_id=locked.pk,
            actor=actor,
            detail={"changed": changes},
        )
    for field, value in wanted.items():
        setattr(user, field, value)
    return True
