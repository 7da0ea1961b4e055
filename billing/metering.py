"""Reserve / settle / release: the metering primitive the relay calls per request.

- `usage_reserve` holds an upper bound of a request's cost against the account
  AND the token's quota, atomically: both conditional UPDATEs succeed in one
  transaction, or neither does and `UsageRefused` says which was short.
- `usage_settle` charges the actual cost, frees the rest of the hold, bumps
  used / request count on the account and the token and writes the request log
  row, all in one transaction; it is idempotent per request id.
- `usage_release` frees the hold of a request that failed.

A reservation is closed exactly once: its status changes open → settled or
open → released by a conditional UPDATE, which only one caller can win.

Policy when the actual cost exceeds the reservation (the relay under-estimated,
or a lease expired and the reservation was released before the settle arrived):
the cost is charged as far as the account's available balance (and the token's
remaining quota) covers it — the hold plus whatever is still free — and the rest
is forgiven. A balance never goes negative and the books stay exact, because the
request log row records the cost actually charged. The relay should reserve the
true maximum (max_tokens at the model's price) so this never happens.

Locks: token row, then account row, in every path (see `billing.services`). The
account row is updated last so its lock is held for as short a time as possible.
"""

import logging
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Q, When
from django.utils import timezone

from accounts.models import Token
from billing.models import Account, Reservation
from logs.models import RequestLog, RequestLogData

logger = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = settings.COMET_RESERVATION_LEASE_SECONDS


class UsageRefused(Exception):
    """A reservation that was refused; `code` is for programs, `message` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def usage_reserve(
    *,
    token_id: int,
    user_id: int,
    request_id: str,
    amount: int,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
) -> None:
    """Hold `amount` micro-USD against the account and the token for one request.

    Raise UsageRefused("insufficient_quota", ...) when the balance or the token's
    quota cannot cover it, ("invalid_api_key", ...) when the token is gone,
    disabled or expired, ("duplicate_request", ...) when the request id is taken.
    A refusal changes nothing.
    """
    if amount <= 0:
        raise ValueError("A reservation holds a positive amount.")
    now = timezone.now()
    with transaction.atomic():
        held_by_token = (
            Token.objects.filter(pk=token_id, user_id=user_id, is_enabled=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .filter(
                Q(quota_remaining__isnull=True) | Q(quota_remaining__gte=F("reserved") + amount)
            )
            .update(reserved=F("reserved") + amount)
        )
        if not held_by_token:
            _refuse_for_token(token_id=token_id, user_id=user_id, now=now)
        held_by_account = Account.objects.filter(
            pk=user_id, balance__gte=F("reserved") + amount
        ).update(reserved=F("reserved") + amount)
        if not held_by_account:
            raise UsageRefused(
                "insufficient_quota",
                "Your balance is too low for this request. Top up your account to continue.",
            )
        try:
            with transaction.atomic():
                Reservation.objects.create(
                    request_id=request_id,
                    account_id=user_id,
                    token_id=token_id,
                    amount=amount,
                    expires_at=now + timedelta(seconds=lease_seconds),
                )
        except IntegrityError as error:
            raise UsageRefused(
                "duplicate_request", f"The request id {request_id} was already used."
            ) from error


def _refuse_for_token(*, token_id: int, user_id: int, now: datetime) -> None:
    token = Token.objects.filter(pk=token_id, user_id=user_id).first()
    if token is None or not token.is_enabled:
        raise UsageRefused("invalid_api_key", "This API token is disabled or was deleted.")
    if token.expires_at is not None and token.expires_at <= now:
        raise UsageRefused("invalid_api_key", "This API token has expired.")
    if token.quota_remaining == 0 and token.reserved == 0:
        raise UsageRefused("insufficient_quota", "This API token is query-only: its quota is 0.")
    raise UsageRefused(
        "insufficient_quota",
        "This API token's quota is too low for this request. Raise the token's quota "
        "or use another token.",
    )


def _reservation_close(*, request_id: str, from_status: str, to_status: str) -> tuple | None:
    """Move a reservation between statuses; return (account_id, token_id, amount) if won."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Reservation._meta.db_table} SET status = %s "  # noqa: S608 (our table name)
            "WHERE request_id = %s AND status = %s RETURNING account_id, token_id, amount",
            [to_status, request_id, from_status],
        )
        return cursor.fetchone()


def usage_settle(*, request_id: str, cost: int, log: RequestLogData) -> None:
    """Charge a request's actual cost, free the rest of its hold and write its log row.

    Idempotent: a request id that was already settled changes nothing.
    """
    if cost < 0:
        raise ValueError("A cost cannot be negative.")
    with transaction.atomic():
        claimed = _reservation_close(
            request_id=request_id,
            from_status=Reservation.Status.OPEN,
            to_status=Reservation.Status.SETTLED,
        )
        is_late = False
        if claimed is None:
            # Released (lease expired, or the relay gave up) before the settle came.
            claimed = _reservation_close(
                request_id=request_id,
                from_status=Reservation.Status.RELEASED,
                to_status=Reservation.Status.SETTLED,
            )
            is_late = True
        if claimed is None:
            if Reservation.objects.filter(request_id=request_id).exists():
                return  # Already settled: idempotent.
            raise ValueError(f"No reservation for request id {request_id}.")
        user_id, token_id, held = claimed
        hold = 0 if is_late else held
        charged = (
            cost
            if cost <= hold
            else _charge_over_hold(
                user_id=user_id, token_id=token_id, hold=hold, cost=cost, request_id=request_id
            )
        )
        now = timezone.now()
        RequestLog.objects.create(
            created_at=log.created_at or now,
            request_id=request_id,
            user_id=user_id,
            token_id=token_id,
            token_name=log.token_name,
            model=log.model,
            channel_id=log.channel_id,
            prompt_tokens=log.prompt_tokens,
            completion_tokens=log.completion_tokens,
            cached_tokens=log.cached_tokens,
            cost=charged,
            model_ratio=log.model_ratio,
            completion_ratio=log.completion_ratio,
            group_ratio=log.group_ratio,
            price_per_call=log.price_per_call,
            client_ip=log.client_ip,
            status_code=log.status_code,
            error_code=log.error_code,
            latency_ms=log.latency_ms,
            first_token_ms=log.first_token_ms,
            is_stream=log.is_stream,
            usage_estimated=log.usage_estimated,
        )
        if token_id is not None:
            Token.objects.filter(pk=token_id).update(
                reserved=F("reserved") - hold,
                used=F("used") + charged,
                request_count=F("request_count") + 1,
                quota_remaining=Case(
                    When(quota_remaining__isnull=True, then=None),
                    default=F("quota_remaining") - charged,
                ),
                last_used_at=now,
                last_used_ip=log.client_ip,
            )
        Account.objects.filter(pk=user_id).update(
            balance=F("balance") - charged,
            reserved=F("reserved") - hold,
            used=F("used") + charged,
            request_count=F("request_count") + 1,
        )


def _charge_over_hold(
    *, user_id: int, token_id: int | None, hold: int, cost: int, request_id: str
) -> int:
    """Return what may be charged when `cost` exceeds `hold` (locks token, then account)."""
    allowed = cost
    if token_id is not None:
        token = Token.objects.select_for_update().filter(pk=token_id).first()
        if token is not None and token.quota_remaining is not None:
            allowed = min(allowed, hold + token.quota_remaining - token.reserved)
    account = Account.objects.select_for_update().get(pk=user_id)
    allowed = max(0, min(allowed, hold + account.balance - account.reserved))
    if allowed < cost:
        logger.warning(
            "Request %s cost %d micro-USD, %d more than could be charged; the rest is forgiven.",
            request_id,
            cost,
            cost - allowed,
        )
    return allowed


def usage_release(*, request_id: str) -> None:
    """Free the hold of a request that will not be settled (it failed upstream)."""
    with transaction.atomic():
        claimed = _reservation_close(
            request_id=request_id,
            from_status=Reservation.Status.OPEN,
            to_status=Reservation.Status.RELEASED,
        )
        if claimed is None:
            return  # Already settled or released, or never reserved.
        user_id, token_id, hold = claimed
        if token_id is not None:
            Token.objects.filter(pk=token_id).update(reserved=F("reserved") - hold)
        Account.objects.filter(pk=user_id).update(reserved=F("reserved") - hold)


def reservation_release_expired(*, limit: int = 1000) -> int:
    """Release open reservations whose lease has passed; return how many were released."""
    now = timezone.now()
    expired = list(
        Reservation.objects.filter(status=Reservation.Status.OPEN, expires_at__lt=now)
        .order_by("expires_at")
        .values_list("request_id", flat=True)[:limit]
    )
    for request_id in expired:
        usage_release(request_id=request_id)
    # Closed rows are kept a day so a late settle still finds its request.
    Reservation.objects.exclude(status=Reservation.Status.OPEN).filter(
        created_at__lt=now - timedelta(days=1)
    ).delete()
    return len(expired)


ausage_reserve = sync_to_async(usage_reserve, thread_sensitive=False)
ausage_settle = sync_to_async(usage_settle, thread_sensitive=False)
ausage_release = sync_to_async(usage_release, thread_sensitive=False)
