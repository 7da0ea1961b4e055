"""Writes of API tokens: create, change, enable or disable, roll the key, delete.

The Token model and authentication are `accounts`'; these services are here, above
`billing`, because deleting a token gives back what billing holds for it.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from accounts.models import AuditEvent, Token, TokenFormNonce, User
from accounts.services import audit_record
from accounts.tokens import (
    key_display_parts,
    key_generate,
    key_hash,
    networks_parse,
    token_cache_invalidate,
)
from billing.alerts import THRESHOLD_MAX, token_quota_alert_state
from billing.locks import lock_rows
from billing.models import Account, Reservation
from core.money import format_usd
from models_catalog.models import DEFAULT_CONCURRENCY_LIMIT
from models_catalog.selectors import AccountLimits, user_account_limits
from tokens.form_nonces import FORM_NONCE_MAX_AGE_SECONDS

# The most tokens one account may have: one per app or environment leaves room to
# spare, while a script stuck in a loop cannot fill the table (or the token list).
TOKENS_PER_USER = 50


def _clean_models(models: Sequence[str]) -> list[str]:
    return sorted({name.strip() for name in models if name.strip()})


def _clean_networks(networks: Sequence[str]) -> list[str]:
    try:
        return [str(network) for network in networks_parse(networks)]
    except ValueError as error:
        raise ValidationError({"allowed_networks": str(error)}) from error


class FormAlreadyUsed(Exception):
    """A form that shows a key was posted again: nothing was created or rolled this time.

    `token` is what the first post created or rolled (None once it was deleted).
    """

    def __init__(self, token: Token | None) -> None:
        super().__init__("This form was already used.")
        self.token = token


def _form_nonce_refuse_used(*, user: User, nonce: str | None) -> None:
    """Raise `FormAlreadyUsed` if this form's nonce was used (in the caller's transaction).

    The caller holds a lock that serializes the posts this nonce could come from (the
    owner's row, or the token's), so a second post waits for the first to commit and
    then finds its row; the unique constraint is the last word (`_form_nonce_record`).
    """
    if nonce is None:
        return
    used = TokenFormNonce.objects.filter(user=user, nonce=nonce).select_related("token").first()
    if used is not None:
        raise FormAlreadyUsed(used.token)


def _form_nonce_record(*, user: User, nonce: str | None, token: Token) -> None:
    """Record a form's nonce as used by what it did to `token`; forget expired ones."""
    if nonce is None:
        return
    TokenFormNonce.objects.filter(
        user=user, created_at__lt=timezone.now() - timedelta(seconds=FORM_NONCE_MAX_AGE_SECONDS)
    ).delete()
    try:
        with transaction.atomic():
            TokenFormNonce.objects.create(user=user, nonce=nonce, token=token)
    except IntegrityError as error:
        raise FormAlreadyUsed(None) from error


def _check_quota(quota_remaining: int | None) -> None:
    if quota_remaining is not None and quota_remaining < 0:
        raise ValidationError({"quota_remaining": gettext("A quota cannot be negative.")})


def _check_quota_alert(quota_remaining: int | None, threshold: int | None) -> None:
    if threshold is None:
        return
    if not 0 < threshold <= THRESHOLD_MAX:
        raise ValidationError(
            {
                "quota_alert_threshold": gettext(
                    "A quota alert is an amount above zero, at most %(maximum)s."
                )
                % {"maximum": format_usd(THRESHOLD_MAX)}
            }
        )
    if quota_remaining is None:
        raise ValidationError(
            {
                "quota_alert_threshold": gettext(
                    "An unlimited token has no quota to alert on: set a quota or leave "
                    "the alert empty."
                )
            }
        )


def token_limit_problems(
    *, account: AccountLimits, concurrency_limit: int | None, rpm_limit: int | None
) -> dict[str, str]:
    """Return, by field, why a token's limits are refused: a token may not allow more
    than its account (`models_catalog.selectors.account_limits`)."""
    problems = {}
    if concurrency_limit is not None and concurrency_limit > account.concurrency_limit:
        problems["concurrency_limit"] = gettext(
            "Your account allows at most %(limit)s requests in flight, so a token's "
            "limit cannot be higher. Contact support to raise your account's limit."
        ) % {"limit": account.concurrency_limit}
    if account.rpm_limit and rpm_limit is not None and rpm_limit > account.rpm_limit:
        problems["rpm_limit"] = gettext(
            "Your account allows at most %(limit)s requests per minute, so a token's "
            "limit cannot be higher. Contact support to raise your account's limit."
        ) % {"limit": account.rpm_limit}
    return problems


def _check_limits(*, user: User, concurrency_limit: int | None, rpm_limit: int | None) -> None:
    problems = token_limit_problems(
        account=user_account_limits(user), concurrency_limit=concurrency_limit, rpm_limit=rpm_limit
    )
    if problems:
        raise ValidationError(problems)


def _audit(
    action: AuditEvent.Action, token: Token, *, actor: User | None, detail: dict | None = None
) -> None:
    """Record a change of `token` in the audit log, in the caller's transaction."""
    audit_record(
        action=action,
        target=token,
        label=token.name,
        user_id=token.user_id,
        actor=actor,
        detail=detail,
    )


def token_create(
    *,
    user: User,
    name: str,
    quota_remaining: int | None = None,
    expires_at: datetime | None = None,
    allowed_models: Sequence[str] = (),
    allowed_networks: Sequence[str] = (),
    concurrency_limit: int | None = None,
    rpm_limit: int | None = None,
    quota_alert_threshold: int | None = None,
    form_nonce: str | None = None,
    actor: User | None = None,
) -> tuple[Token, str]:
    """Create a token and return it with its key: the only time the key exists in full.

    Its limits may not pass its account's (ValidationError); `concurrency_limit` None
    is 100 or the account's limit if lower. With `form_nonce` (a console form's,
    checked by `tokens.form_nonces`), a second call with the same nonce creates
    nothing and raises `FormAlreadyUsed`. `actor` is who asked (the owner in the
    console; None for the system), for the audit log.
    """
    _check_quota(quota_remaining)
    _check_quota_alert(quota_remaining, quota_alert_threshold)
    if concurrency_limit is None:
        concurrency_limit = min(
            DEFAULT_CONCURRENCY_LIMIT, user_account_limits(user).concurrency_limit
        )
    _check_limits(user=user, concurrency_limit=concurrency_limit, rpm_limit=rpm_limit)
    networks = _clean_networks(allowed_networks)
    raw_key = key_generate()
    prefix, last4 = key_display_parts(raw_key)
    limit = TOKENS_PER_USER
    with transaction.atomic():
        # Lock the owner so two concurrent creations cannot both pass the limit
        # (no_key: the request log's foreign-key checks on the user are not blocked).
        User.objects.select_for_update(no_key=True).filter(pk=user.pk).first()
        _form_nonce_refuse_used(user=user, nonce=form_nonce)
        if Token.objects.filter(user=user).count() >= limit:
            raise ValidationError(
                gettext(
                    "You already have %(limit)s tokens, the most an account may have. "
                    "Delete one you no longer use first."
                )
                % {"limit": limit}
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
            **token_quota_alert_state(
                token=Token(),
                quota_remaining=quota_remaining,
                threshold=quota_alert_threshold,
            ),
        )
        _form_nonce_record(user=user, nonce=form_nonce, token=token)
        _audit(AuditEvent.Action.TOKEN_CREATED, token, actor=actor)
    return token, raw_key


def token_roll(
    *, token: Token, form_nonce: str | None = None, actor: User | None = None
) -> tuple[Token, str]:
    """Give a token a new key and return it with the key, shown this once.

    The token keeps its id, settings, quota, usage and logs; only the key changes.
    The old key's cache entry is dropped when the change commits, so every process
    refuses the old key within a second (as for a disabled token: `accounts.tokens`,
    `relay.memo`). Money is not touched: requests the old key started are charged
    as usual. With `form_nonce`, a second call with it raises `FormAlreadyUsed`.
    """
    raw_key = key_generate()
    prefix, last4 = key_display_parts(raw_key)
    with transaction.atomic():
        locked = Token.objects.select_for_update().select_related("user").get(pk=token.pk)
        _form_nonce_refuse_used(user=locked.user, nonce=form_nonce)
        _form_nonce_record(user=locked.user, nonce=form_nonce, token=locked)
        old_hash = locked.key_hash
        locked.key_hash = key_hash(raw_key)
        locked.key_prefix = prefix
        locked.key_last4 = last4
        locked.save(update_fields=["key_hash", "key_prefix", "key_last4", "updated_at"])
        _audit(AuditEvent.Action.TOKEN_KEY_ROLLED, locked, actor=actor)
        token_cache_invalidate(old_hash)
        token_cache_invalidate(locked.key_hash)
    return locked, raw_key


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
    quota_alert_threshold: int | None = None,
    actor: User | None = None,
) -> Token:
    """Change a token's settings; every process sees the change once it commits.

    A limit changed to more than the account's is refused (ValidationError); one left
    as it was stays even if an admin has since lowered the account's (the relay
    applies the lower). The audit log names the settings that changed (a save that
    changes none has no row).
    """
    _check_quota(quota_remaining)
    _check_quota_alert(quota_remaining, quota_alert_threshold)
    networks = _clean_networks(allowed_networks)
    with transaction.atomic():
        locked = Token.objects.select_for_update().select_related("user").get(pk=token.pk)
        _check_limits(
            user=locked.user,
            concurrency_limit=(
                concurrency_limit if concurrency_limit != locked.concurrency_limit else None
            ),
            rpm_limit=rpm_limit if rpm_limit != locked.rpm_limit else None,
        )
        if quota_remaining is not None and quota_remaining < locked.reserved:
            raise ValidationError(
                {
                    "quota_remaining": gettext(
                        "Requests in flight hold part of this quota; "
                        "set it to at least what they hold or try again in a moment."
                    )
                }
            )
        settings_now = {
            "name": name.strip(),
            "quota_remaining": quota_remaining,
            "expires_at": expires_at,
            "allowed_models": _clean_models(allowed_models),
            "allowed_networks": networks,
            "concurrency_limit": concurrency_limit,
            "rpm_limit": rpm_limit,
            "quota_alert_threshold": quota_alert_threshold,
        }
        changed = sorted(
            field for field, value in settings_now.items() if getattr(locked, field) != value
        )
        alert = token_quota_alert_state(
            token=locked, quota_remaining=quota_remaining, threshold=quota_alert_threshold
        )
        for field, value in (settings_now | alert).items():
            setattr(locked, field, value)
        locked.save(update_fields=[*settings_now, *alert, "updated_at"])
        if changed:
            _audit(
                AuditEvent.Action.TOKEN_CHANGED, locked, actor=actor, detail={"changed": changed}
            )
        token_cache_invalidate(locked.key_hash)
    return locked


def token_set_enabled(*, token: Token, is_enabled: bool, actor: User | None = None) -> Token:
    """Enable or disable a token; a disabled token is refused by every process at once.

    Only a token that was not already so is changed (and has an audit row).
    """
    with transaction.atomic():
        changed = (
            Token.objects.filter(pk=token.pk)
            .exclude(is_enabled=is_enabled)
            .update(is_enabled=is_enabled, updated_at=timezone.now())
        )
        if changed:
            _audit(
                (
                    AuditEvent.Action.TOKEN_ENABLED
                    if is_enabled
                    else AuditEvent.Action.TOKEN_DISABLED
                ),
                token,
                actor=actor,
            )
        token_cache_invalidate(token.key_hash)
    token.refresh_from_db()
    return token


def token_delete(*, token: Token, actor: User | None = None) -> None:
    """Delete a token, even while requests use it; its request logs keep its name.

    What its grants and reservations hold goes back to the account at once. The
    requests they already admitted are charged in full when they settle (logged
    without the token); new requests are refused within a second. Locks the
    account, the token, then its open reservations, in the one order. The audit
    log keeps the token's id and name, with `actor` (who asked).
    """
    with transaction.atomic():
        lock_rows(accounts=[token.user_id], tokens=[token.pk])
        # Every path that makes a reservation locks the account first: none can appear now.
        open_reservations = Reservation.objects.filter(
            token_id=token.pk, status=Reservation.Status.OPEN
        )
        lock_rows(reservations=open_reservations.values_list("pk", flat=True))
        held = list(open_reservations.values_list("pk", "amount"))
        if held:
            Reservation.objects.filter(pk__in=[pk for pk, _ in held]).update(
                status=Reservation.Status.RELEASED
            )
            Account.objects.filter(pk=token.user_id).update(
                reserved=F("reserved") - sum(amount for _, amount in held)
            )
        Reservation.objects.filter(token_id=token.pk).update(token=None)
        token_cache_invalidate(token.key_hash)
        deleted, _by_model = Token.objects.filter(pk=token.pk).delete()
        if deleted:
            _audit(AuditEvent.Action.TOKEN_DELETED, token, actor=actor)
