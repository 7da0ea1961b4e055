"""Credit grants: blocks of an account's money held in PostgreSQL for one relay process.

A relay process admits requests in memory (`billing.meter.CreditMeter`) against
money it holds in **grants**, the way a telephone switch asks the charging system
for a block of credit and spends it call by call. A grant is an open `Reservation`
(request id `grant:<hex>`) holding a block of the account's balance, and of the
token's quota when it has one. This module is the database side of grants:

- `grant_take` holds a block (account row, then token row, then the grant, locked
  in that order), or refuses with `UsageRefused` and changes nothing;
- `grant_return` frees what a grant holds unused, or all of it and closes it;
- `grant_renew` pushes back the lease of grants still in use;
- `grant_release_expired` (beat) frees the grants of a process that died, once
  their lease has passed.

What requests spent from a grant is written by `billing.settlement.settle_many`.
The books stay exact at every commit: a grant's `amount` is what it still holds,
so `Account.reserved` = Σ open reservations, and balance = Σ ledger - Σ request
costs, as `reconcile` checks them.

Locks: accounts, then tokens, then grants, each by id, through `billing.locks`.
"""

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_noop

from accounts.models import Token
from billing.locks import lock_rows
from billing.models import Account, Reservation
from core.money import format_owed

GRANT_PREFIX = "grant:"
# Closed grants are kept this long for the admin and `reconcile` to read, then deleted.
CLOSED_GRANTS_KEPT = timedelta(days=1)


class UsageRefused(Exception):
    """A request refused by the money core; `code` is for programs, `message` for people.

    `template` is an English msgid (gettext_noop) that `params` fill: the relay sends
    it in the language the request asks for (relay.http.RelayError).
    """

    def __init__(
        self, code: str, template: str, params: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(template)
        self.code = code
        self.template = template
        self.params = params

    @property
    def message(self) -> str:
        """The message in English."""
        return self.template % self.params if self.params else self.template


def duplicate_refusal(request_id: str) -> UsageRefused:
    return UsageRefused(
        "duplicate_request",
        gettext_noop("The request id %(request_id)s was already used."),
        {"request_id": request_id},
    )


def balance_refusal(user_id: int | None = None) -> UsageRefused:
    """Say why the account cannot pay: frozen, owing, or a balance too low."""
    account = (
        Account.objects.filter(pk=user_id).values("is_frozen", "balance").first()
        if user_id is not None
        else None
    )
    if account is not None and account["is_frozen"]:
        return UsageRefused(
            "account_frozen",
            gettext_noop(
                "A payment dispute froze this account: requests are refused until it is "
                "resolved. Contact support."
            ),
        )
    if account is not None and account["balance"] < 0:
        return UsageRefused(
            "insufficient_quota",
            gettext_noop(
                "Your account owes %(owed)s: requests are refused until a top-up or a "
                "redemption code pays it back."
            ),
            {"owed": format_owed(-account["balance"])},
        )
    return UsageRefused(
        "insufficient_quota",
        gettext_noop("Your balance is too low for this request. Top up your account to continue."),
    )


def token_refusal(*, token_id: int, user_id: int, now: datetime) -> UsageRefused:
    """Say why the token cannot pay: gone, disabled, expired, query-only, or short."""
    token = Token.objects.filter(pk=token_id, user_id=user_id).first()
    if token is None or not token.is_enabled:
        return UsageRefused(
            "invalid_api_key", gettext_noop("This API token is disabled or was deleted.")
        )
    if token.expires_at is not None and token.expires_at <= now:
        return UsageRefused("invalid_api_key", gettext_noop("This API token has expired."))
    if token.quota_remaining == 0 and token.reserved == 0:
        return UsageRefused(
            "insufficient_quota", gettext_noop("This API token is query-only: its quota is 0.")
        )
    return UsageRefused(
        "insufficient_quota",
        gettext_noop(
            "This API token's quota is too low for this request. Raise the token's quota "
            "or use another token."
        ),
    )


def grant_take(
    *,
    token_id: int,
    user_id: int,
    minimum: int,
    desired: int,
    lease_seconds: int,
    grant_id: int | None = None,
) -> tuple[int, int]:
    """Hold between `minimum` and `desired` micro-USD in a grant; return (its id, amount).

    Takes as much of `desired` as the account's free balance (and the token's free
    quota) allows, but never more than a quarter of it unless `minimum` needs more.
    With `grant_id`, the amount is added to that grant if it is still open (a new
    one is made otherwise). Raises UsageRefused when not even `minimum` is free or
    the token is disabled, expired or gone; a refusal changes nothing. Locks:
    account, token, then the grant (`billing.locks`).
    """
    now = timezone.now()
    with transaction.atomic():
        lock_rows(accounts=[user_id], tokens=[token_id], reservations=[grant_id])
        account = (
            Account.objects.filter(pk=user_id).values("balance", "reserved", "is_frozen").first()
        )
        if account is None or account["is_frozen"]:
            raise balance_refusal(user_id)
        token = (
            Token.objects.filter(pk=token_id, user_id=user_id, is_enabled=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .values("quota_remaining", "reserved")
            .first()
        )
        if token is None:
            raise token_refusal(token_id=token_id, user_id=user_id, now=now)
        account_free = account["balance"] - account["reserved"]
        if account_free < minimum:
            raise balance_refusal(user_id)
        free = account_free
        quota = token["quota_remaining"]
        on_quota = quota is not None
        if quota is not None:
            free = min(free, quota - token["reserved"])
            if free < minimum:
                raise token_refusal(token_id=token_id, user_id=user_id, now=now)
        amount = max(minimum, min(desired, free // 4))
        Account.objects.filter(pk=user_id).update(reserved=F("reserved") + amount)
        if on_quota:
            Token.objects.filter(pk=token_id).update(reserved=F("reserved") + amount)
        expires_at = now + timedelta(seconds=lease_seconds)
        if grant_id is not None:
            # A grant holds all of its amount on the token's quota, or none of it.
            same_kind = Q(token_amount=F("amount")) if on_quota else Q(token_amount=0)
            extended = (
                Reservation.objects.filter(
                    pk=grant_id, token_id=token_id, status=Reservation.Status.OPEN
                )
                .filter(same_kind)
                .update(
                    amount=F("amount") + amount,
                    token_amount=F("token_amount") + (amount if on_quota else 0),
                    expires_at=expires_at,
                )
            )
            if extended:
                return grant_id, amount
        grant = Reservation.objects.create(
            request_id=f"{GRANT_PREFIX}{uuid.uuid4().hex}",
            account_id=user_id,
            token_id=token_id,
            amount=amount,
            token_amount=amount if on_quota else 0,
            expires_at=expires_at,
        )
    return grant.pk, amount


def grant_return(*, grant_id: int, amount: int | None = None) -> int:
    """Free money a grant holds: `amount` of it, or all of it and close the grant.

    Returns what was freed (0 if the grant was closed already: its lease ended and
    `grant_release_expired` freed it, or its token was deleted).
    """
    owner = Reservation.objects.filter(pk=grant_id).values("account_id", "token_id").first()
    if owner is None:
        return 0
    with transaction.atomic():
        lock_rows(
            accounts=[owner["account_id"]], tokens=[owner["token_id"]], reservations=[grant_id]
        )
        grant = (
            Reservation.objects.filter(pk=grant_id, status=Reservation.Status.OPEN)
            .values("account_id", "token_id", "amount", "token_amount")
            .first()
        )
        if grant is None:
            return 0
        freed = grant["amount"] if amount is None else min(amount, grant["amount"])
        # A grant holds all of its amount on the token's quota, or none of it.
        token_freed = min(freed, grant["token_amount"])
        Reservation.objects.filter(pk=grant_id).update(
            amount=F("amount") - freed,
            token_amount=F("token_amount") - token_freed,
            status=Reservation.Status.RELEASED if amount is None else Reservation.Status.OPEN,
        )
        Account.objects.filter(pk=grant["account_id"]).update(reserved=F("reserved") - freed)
        if grant["token_id"] is not None and token_freed:
            Token.objects.filter(pk=grant["token_id"]).update(reserved=F("reserved") - token_freed)
    return freed


def grant_renew(*, grant_ids: Sequence[int], lease_seconds: int) -> None:
    """Push back the lease of grants still in use."""
    with transaction.atomic():
        lock_rows(reservations=grant_ids)
        Reservation.objects.filter(pk__in=list(grant_ids), status=Reservation.Status.OPEN).update(
            expires_at=timezone.now() + timedelta(seconds=lease_seconds)
        )


def grant_release_expired(*, limit: int = 1000) -> int:
    """Free the open grants whose lease has passed (their process died); return how many.

    A living process renews its grants' leases; one that died leaves them held until
    this runs (beat, every minute). Closed grants older than `CLOSED_GRANTS_KEPT` are
    deleted.
    """
    now = timezone.now()
    expired = list(
        Reservation.objects.filter(status=Reservation.Status.OPEN, expires_at__lt=now)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    for grant_id in expired:
        grant_return(grant_id=grant_id)
    Reservation.objects.exclude(status=Reservation.Status.OPEN).filter(
        created_at__lt=now - CLOSED_GRANTS_KEPT
    ).delete()
    return len(expired)
