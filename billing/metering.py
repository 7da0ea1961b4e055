"""Reserve / settle / release: the metering primitive the relay calls per request.

- `usage_reserve` holds an upper bound of a request's cost against the account
  AND the token's quota, atomically: both holds are taken, or neither is and
  `UsageRefused` says which was short.
- `usage_settle` charges the actual cost, frees the rest of the hold, bumps
  used / request count on the account and the token and writes the request log
  row, all atomically; it is idempotent per request id.
- `usage_release` frees the hold of a request that failed.
- `usage_settle_many` settles a batch as `usage_settle` would each request, in one
  statement on PostgreSQL (the relay settles this way, `relay/settler.py`);
  `usage_settle` is a batch of one.
- `ReservePool` runs `usage_reserve`'s statement from an event loop on its own
  connections (the relay's reservations when credit grants are off).

The relay, on PostgreSQL, reserves and settles through `billing.grants` instead:
in memory, against blocks of money held as reservations here, written back in
batches, because one hot account row cannot take a committed change per request
at the rates a busy account needs (bench/billing/README.md).

A reservation is closed exactly once: its status changes open -> settled or
open -> released by a conditional UPDATE, which only one caller can win.

Speed: on PostgreSQL a reserve is ONE SQL statement in autocommit: data-modifying
CTEs chain the conditional UPDATEs so each runs only if the previous one matched,
and a guard (a division by zero) aborts the whole statement if a later step failed
after an earlier one succeeded. A settle batch locks its rows in the one order and
then runs ONE statement for the whole batch. Other databases (the embedded SQLite
default) and the rare paths use the ORM inside `transaction.atomic`.

Policy when the actual cost exceeds the reservation (the upstream answered more
than the hold allowed for, or a lease expired and the reservation was released
before the settle arrived): the request is charged its whole actual cost. What
the hold does not cover comes off the balance, below zero if need be; the account
then owes it, is refused (402) until a recharge or code pays it back, and is told
once. Nothing answered is forgiven; only an admin may forgive a debt, as an audited
ledger entry (`billing.services.account_debt_forgive`).

A token that had no quota when the request reserved but was given one before it
settled is charged in `used`, and its quota goes down as far as it can without
dropping below what other requests hold.

Locks: accounts, then tokens, then reservations, each by id, in every path that
locks more than one row (`billing.locks.lock_rows`), so two transactions never wait
on each other in a cycle.
"""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.db.models import Case, F, Q, When
from django.db.models.functions import Greatest
from django.utils import timezone
from psycopg.errors import DivisionByZero
from psycopg.pq import TransactionStatus

from accounts.models import Token
from billing.locks import lock_rows
from billing.models import Account, Reservation
from billing.money import format_owed
from billing.services import account_debt_notify
from comet.db import on_database_thread
from logs.models import RequestLog, RequestLogData
from logs.rollups import SETTLE_CTE, SETTLE_SELECT, rollups_record
from logs.services import new_ip_notify

logger = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = settings.COMET_RESERVATION_LEASE_SECONDS


class UsageRefused(Exception):
    """A reservation that was refused; `code` is for programs, `message` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _single_statement() -> bool:
    return connection.vendor == "postgresql"


_ACCOUNT = Account._meta.db_table
_TOKEN = Token._meta.db_table
_RESERVATION = Reservation._meta.db_table
_LOG = RequestLog._meta.db_table

# Table names come from our own models, never from input.
_RESERVE_SQL = f"""
WITH token AS (
    SELECT id, quota_remaining IS NOT NULL AS has_quota FROM {_TOKEN}
    WHERE id = %(token_id)s AND user_id = %(user_id)s AND is_enabled
      AND (expires_at IS NULL OR expires_at > %(now)s)
), account AS (
    UPDATE {_ACCOUNT} SET reserved = reserved + %(amount)s
    WHERE user_id = %(user_id)s AND balance - reserved >= %(amount)s AND NOT is_frozen
      AND EXISTS (SELECT 1 FROM token)
    RETURNING user_id
), token_hold AS (
    UPDATE {_TOKEN} SET reserved = reserved + %(amount)s
    WHERE id = %(token_id)s AND quota_remaining IS NOT NULL
      AND quota_remaining - reserved >= %(amount)s AND EXISTS (SELECT 1 FROM account)
    RETURNING id
), reservation AS (
    INSERT INTO {_RESERVATION}
        (request_id, account_id, token_id, amount, token_amount, status, created_at, expires_at)
    SELECT %(request_id)s, account.user_id, token.id, %(amount)s,
           CASE WHEN token.has_quota THEN %(amount)s ELSE 0 END, 'open', %(now)s, %(expires_at)s
    FROM account, token
    WHERE NOT token.has_quota OR EXISTS (SELECT 1 FROM token_hold)
    ON CONFLICT (request_id) DO NOTHING
    RETURNING id
)
SELECT
    (SELECT count(*) FROM token),
    (SELECT count(*) FROM account),
    (SELECT count(*) FROM reservation),
    -- The account hold was taken but the reservation was not: abort everything.
    1 / (CASE WHEN (SELECT count(*) FROM account) = 1
              AND (SELECT count(*) FROM reservation) = 0 THEN 0 ELSE 1 END)
"""  # noqa: S608

# Settle a batch of requests (one for `usage_settle`) in ONE statement, run after
# `lock_rows` locked the batch's accounts, tokens and reservations (in that order).
# `input` is the batch, one row per request id (the caller drops repeats). Only
# reservations still open whose hold covers the cost are claimed here; the others
# are left to the ORM path. Each account and each token is updated once with the
# batch's sums: the hot account row is written once per batch. The rollup
# increments (`logs.rollups.SETTLE_CTE`) hang off `log`: same statement, same commit.
_SETTLE_SQL = f"""
WITH input AS (
    SELECT * FROM unnest(
        %(request_id)s::varchar[], %(cost)s::bigint[], %(created_at)s::timestamptz[],
        %(token_name)s::varchar[], %(model)s::varchar[], %(channel_id)s::bigint[],
        %(prompt_tokens)s::integer[], %(completion_tokens)s::integer[],
        %(cached_tokens)s::integer[], %(model_ratio)s::numeric[], %(completion_ratio)s::numeric[],
        %(group_ratio)s::numeric[], %(price_per_call)s::bigint[], %(client_ip)s::inet[],
        %(status_code)s::integer[], %(error_code)s::varchar[], %(latency_ms)s::integer[],
        %(first_token_ms)s::integer[], %(is_stream)s::boolean[], %(usage_estimated)s::boolean[],
        %(cached_ratio)s::numeric[]
    ) WITH ORDINALITY AS i(
        request_id, cost, created_at, token_name, model, channel_id, prompt_tokens,
        completion_tokens, cached_tokens, model_ratio, completion_ratio, group_ratio,
        price_per_call, client_ip, status_code, error_code, latency_ms, first_token_ms,
        is_stream, usage_estimated, cached_ratio, ord
    )
), claimed AS (
    UPDATE {_RESERVATION} AS r SET status = 'settled'
    FROM input
    WHERE input.request_id = r.request_id AND r.status = 'open' AND r.amount >= input.cost
    RETURNING r.account_id, r.token_id, r.amount, r.token_amount, input.*
), account_sums AS (
    SELECT account_id, sum(cost) AS cost, sum(amount) AS amount, count(*) AS requests
    FROM claimed GROUP BY account_id
), account AS (
    UPDATE {_ACCOUNT} AS a
    SET balance = a.balance - s.cost, reserved = a.reserved - s.amount,
        used = a.used + s.cost, request_count = a.request_count + s.requests
    FROM account_sums s WHERE a.user_id = s.account_id
    RETURNING a.user_id
), token_sums AS (
    SELECT token_id, sum(cost) AS cost, sum(token_amount) AS token_amount,
        count(*) AS requests, (array_agg(client_ip ORDER BY ord DESC))[1] AS client_ip
    FROM claimed WHERE token_id IS NOT NULL GROUP BY token_id
), token AS (
    UPDATE {_TOKEN} AS t
    SET reserved = t.reserved - s.token_amount, used = t.used + s.cost,
        request_count = t.request_count + s.requests,
        -- GREATEST skips NULLs: an unlimited token (NULL) must stay unlimited.
        quota_remaining = CASE WHEN t.quota_remaining IS NULL THEN NULL ELSE
            GREATEST(t.quota_remaining - s.cost, t.reserved - s.token_amount) END,
        last_used_at = %(now)s, last_used_ip = s.client_ip
    FROM token_sums s WHERE t.id = s.token_id
    RETURNING t.id
), log AS (
    INSERT INTO {_LOG} (
        created_at, request_id, user_id, token_id, token_name, model, channel_id,
        prompt_tokens, completion_tokens, cached_tokens, cost, model_ratio, completion_ratio,
        group_ratio, price_per_call, client_ip, status_code, error_code, latency_ms,
        first_token_ms, is_stream, usage_estimated, cached_ratio
    )
    SELECT created_at, request_id, account_id, token_id, token_name, model, channel_id,
        prompt_tokens, completion_tokens, cached_tokens, cost, model_ratio, completion_ratio,
        group_ratio, price_per_call, client_ip, status_code, error_code, latency_ms,
        first_token_ms, is_stream, usage_estimated, cached_ratio
    FROM claimed ORDER BY ord
    RETURNING *
){SETTLE_CTE}
SELECT (SELECT array_agg(request_id) FROM claimed), {SETTLE_SELECT}
"""  # noqa: S608


def _execute_one(sql: str, parameters: dict) -> tuple:
    """Run one statement; inside a caller's transaction, behind a savepoint."""
    if connection.in_atomic_block:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchone()
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        return cursor.fetchone()


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
    expires_at = now + timedelta(seconds=lease_seconds)
    if not _single_statement():
        _reserve_with_orm(
            token_id=token_id,
            user_id=user_id,
            request_id=request_id,
            amount=amount,
            now=now,
            expires_at=expires_at,
        )
        return
    parameters = {
        "token_id": token_id,
        "user_id": user_id,
        "request_id": request_id,
        "amount": amount,
        "now": now,
        "expires_at": expires_at,
    }
    try:
        tokens, _accounts, reservations, _guard = _execute_one(_RESERVE_SQL, parameters)
    except DataError as error:
        if not isinstance(error.__cause__, DivisionByZero):
            raise
        # The guard fired (nothing was changed): say why.
        if Reservation.objects.filter(request_id=request_id).exists():
            raise _duplicate(request_id) from None
        raise _token_refusal(token_id=token_id, user_id=user_id, now=now) from None
    if reservations:
        return
    if not tokens:
        raise _token_refusal(token_id=token_id, user_id=user_id, now=now)
    raise _balance_refusal(user_id)


# How the pool's connections show in pg_stat_activity.
RESERVE_APPLICATION_NAME = "comet relay reservations"


class ReservePool:
    """Reserve from an event loop on its own PostgreSQL connections: no thread hop.

    The reservation is on every relay request's critical path. Each event loop gets
    up to `size` psycopg async connections (autocommit), on which the reserve
    statement is prepared, so a reservation is one round trip with no planning and
    no handover to a database thread. Anything but a clean success -- a refusal, the
    guard, a lost connection -- is redone by `usage_reserve` on a database thread,
    which says why: a refusal changes nothing, so doing it again is safe. (If a
    connection drops after the server committed a reservation, the retry is refused
    as a duplicate request id and the hold is freed when its lease ends.) `size` 0,
    or a database other than PostgreSQL, always uses `usage_reserve`.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._loops: dict[asyncio.AbstractEventLoop, _LoopConnections] = {}

    async def reserve(
        self,
        *,
        token_id: int,
        user_id: int,
        request_id: str,
        amount: int,
        lease_seconds: int = DEFAULT_LEASE_SECONDS,
    ) -> None:
        """`usage_reserve`, awaitable: hold `amount` or raise UsageRefused."""

        async def on_a_thread() -> None:
            await ausage_reserve(
                token_id=token_id,
                user_id=user_id,
                request_id=request_id,
                amount=amount,
                lease_seconds=lease_seconds,
            )

        if self.size <= 0 or amount <= 0 or not _single_statement():
            await on_a_thread()
            return
        now = timezone.now()
        parameters = {
            "token_id": token_id,
            "user_id": user_id,
            "request_id": request_id,
            "amount": amount,
            "now": now,
            "expires_at": now + timedelta(seconds=lease_seconds),
        }
        loop = asyncio.get_running_loop()
        connections = self._loops.get(loop)
        if connections is None:
            connections = self._loops[loop] = _LoopConnections(self.size)
        try:
            row = await connections.execute(_RESERVE_SQL, parameters)
        except (psycopg.Error, OSError):
            row = None
        if row is None or not row[2]:
            await on_a_thread()

    async def aclose(self) -> None:
        """Close this event loop's connections (at server shutdown)."""
        connections = self._loops.pop(asyncio.get_running_loop(), None)
        if connections is not None:
            await connections.aclose()


class _LoopConnections:
    """Up to `size` async connections of one event loop, lent one statement at a time."""

    def __init__(self, size: int) -> None:
        self._free = asyncio.Semaphore(size)
        self._idle: list[psycopg.AsyncConnection] = []

    async def execute(self, sql: str, parameters: dict) -> tuple | None:
        async with self._free:
            borrowed = self._idle.pop() if self._idle else await self._connect()
            try:
                async with borrowed.cursor() as cursor:
                    await cursor.execute(sql, parameters, prepare=True)
                    return await cursor.fetchone()
            finally:
                # A statement that failed leaves an autocommit connection idle and
                # usable; one cut off (cancelled, network) is closed.
                is_idle = borrowed.info.transaction_status == TransactionStatus.IDLE
                if not borrowed.closed and is_idle:
                    self._idle.append(borrowed)
                else:
                    await borrowed.close()

    async def _connect(self) -> psycopg.AsyncConnection:
        parameters = connection.get_connection_params()
        for name in ("cursor_factory", "prepare_threshold"):
            parameters.pop(name, None)
        parameters.setdefault("application_name", RESERVE_APPLICATION_NAME)
        return await psycopg.AsyncConnection.connect(**parameters, autocommit=True)

    async def aclose(self) -> None:
        while self._idle:
            await self._idle.pop().close()


def _reserve_with_orm(
    *,
    token_id: int,
    user_id: int,
    request_id: str,
    amount: int,
    now: datetime,
    expires_at: datetime,
) -> None:
    with transaction.atomic():
        token = (
            Token.objects.filter(pk=token_id, user_id=user_id, is_enabled=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .values("quota_remaining")
            .first()
        )
        if token is None:
            raise _token_refusal(token_id=token_id, user_id=user_id, now=now)
        held_by_account = Account.objects.filter(
            pk=user_id, balance__gte=F("reserved") + amount, is_frozen=False
        ).update(reserved=F("reserved") + amount)
        if not held_by_account:
            raise _balance_refusal(user_id)
        token_amount = 0
        if token["quota_remaining"] is not None:
            token_amount = amount
            held_by_token = Token.objects.filter(
                pk=token_id, quota_remaining__gte=F("reserved") + amount
            ).update(reserved=F("reserved") + amount)
            if not held_by_token:
                raise _token_refusal(token_id=token_id, user_id=user_id, now=now)
        try:
            with transaction.atomic():
                Reservation.objects.create(
                    request_id=request_id,
                    account_id=user_id,
                    token_id=token_id,
                    amount=amount,
                    token_amount=token_amount,
                    expires_at=expires_at,
                )
        except IntegrityError:
            raise _duplicate(request_id) from None


def _duplicate(request_id: str) -> UsageRefused:
    return UsageRefused("duplicate_request", f"The request id {request_id} was already used.")


def _balance_refusal(user_id: int | None = None) -> UsageRefused:
    account = (
        Account.objects.filter(pk=user_id).values("is_frozen", "balance").first()
        if user_id is not None
        else None
    )
    if account is not None and account["is_frozen"]:
        return UsageRefused(
            "account_frozen",
            "A payment dispute froze this account: requests are refused until it is resolved. "
            "Contact support.",
        )
    if account is not None and account["balance"] < 0:
        return UsageRefused(
            "insufficient_quota",
            f"Your account owes {format_owed(-account['balance'])}: requests are refused "
            "until a top-up or a redemption code pays it back.",
        )
    return UsageRefused(
        "insufficient_quota",
        "Your balance is too low for this request. Top up your account to continue.",
    )


def _token_refusal(*, token_id: int, user_id: int, now: datetime) -> UsageRefused:
    token = Token.objects.filter(pk=token_id, user_id=user_id).first()
    if token is None or not token.is_enabled:
        return UsageRefused("invalid_api_key", "This API token is disabled or was deleted.")
    if token.expires_at is not None and token.expires_at <= now:
        return UsageRefused("invalid_api_key", "This API token has expired.")
    if token.quota_remaining == 0 and token.reserved == 0:
        return UsageRefused("insufficient_quota", "This API token is query-only: its quota is 0.")
    return UsageRefused(
        "insufficient_quota",
        "This API token's quota is too low for this request. Raise the token's quota "
        "or use another token.",
    )


def _reservation_close(*, request_id: str, from_status: str, to_status: str) -> tuple | None:
    """Move a reservation between statuses; return (account, token, amount, token amount)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_RESERVATION} SET status = %s "  # noqa: S608 (our table name)
            "WHERE request_id = %s AND status = %s "
            "RETURNING account_id, token_id, amount, token_amount",
            [to_status, request_id, from_status],
        )
        return cursor.fetchone()


@dataclass(frozen=True, slots=True)
class Settlement:
    """One request to settle: its id, its actual cost, the facts of its log row."""

    request_id: str
    cost: int
    log: RequestLogData


def usage_settle(*, request_id: str, cost: int, log: RequestLogData) -> None:
    """Charge a request's actual cost, free the rest of its hold and write its log row.

    Idempotent: a request id that was already settled changes nothing.
    """
    error = usage_settle_many([Settlement(request_id=request_id, cost=cost, log=log)])[0]
    if error is not None:
        raise error


def usage_settle_many(settlements: Sequence[Settlement]) -> list[Exception | None]:
    """Settle many requests, as `usage_settle` would each; return each one's error or None.

    On PostgreSQL the common ones (open, cost within the hold) are settled in ONE
    statement and commit: each account and token row is written once for the whole
    batch. The others (cost over the hold, released before the settle came, already
    settled, unknown) go through the ORM path one by one, with the same policy as
    `usage_settle`. A request id repeated in the batch is settled once. If the batch
    statement fails, each request is tried on its own, so one bad row loses no other.
    """
    errors: list[Exception | None] = [None] * len(settlements)
    now = timezone.now()
    first_index: dict[str, int] = {}
    unique: list[int] = []
    for index, settlement in enumerate(settlements):
        if settlement.cost < 0:
            errors[index] = ValueError("A cost cannot be negative.")
        elif settlement.request_id not in first_index:
            first_index[settlement.request_id] = index
            unique.append(index)
    rest = unique
    if unique and _single_statement():
        try:
            rest = _settle_batch([settlements[index] for index in unique], unique, now)
        except DatabaseError as error:
            rest = []
            if len(unique) == 1:
                errors[unique[0]] = error
            else:
                logger.exception(
                    "A batch of %d settlements failed; retrying one by one", len(unique)
                )
                for index in unique:
                    errors[index] = _settle_alone(settlements[index])
    for index in rest:
        settlement = settlements[index]
        try:
            _settle_with_orm(
                request_id=settlement.request_id, cost=settlement.cost, log=settlement.log, now=now
            )
        except (ValueError, DatabaseError) as error:
            errors[index] = error
    for index, settlement in enumerate(settlements):
        first = first_index.get(settlement.request_id)
        if first is not None and first != index:
            errors[index] = errors[first]
    return errors


def _settle_batch(batch: list[Settlement], indexes: list[int], now: datetime) -> list[int]:
    """Run the batch statement; return the indexes it left to the ORM path."""
    owners = list(
        Reservation.objects.filter(
            request_id__in=[item.request_id for item in batch], status=Reservation.Status.OPEN
        ).values_list("pk", "account_id", "token_id")
    )
    with transaction.atomic():
        lock_rows(
            accounts=[account_id for _, account_id, _ in owners],
            tokens=[token_id for _, _, token_id in owners],
            reservations=[pk for pk, _, _ in owners],
        )
        claimed, new_ip_log_ids = _execute_one(_SETTLE_SQL, settle_parameters(batch, now))
        for log_id in new_ip_log_ids or ():
            new_ip_notify(log_id=log_id)
    settled = set(claimed or ())
    return [
        index for index, item in zip(indexes, batch, strict=True) if item.request_id not in settled
    ]


def _settle_alone(settlement: Settlement) -> Exception | None:
    try:
        usage_settle(request_id=settlement.request_id, cost=settlement.cost, log=settlement.log)
    except (ValueError, DatabaseError) as error:
        return error
    return None


def settle_parameters(settlements: Sequence[Settlement], now: datetime) -> dict:
    columns: dict[str, list] = {"request_id": []}
    for settlement in settlements:
        columns["request_id"].append(settlement.request_id)
        # The log fields include the cost.
        for name, value in _log_fields(settlement.log, settlement.cost, now).items():
            columns.setdefault(name, []).append(value)
    return {**columns, "now": now}


def _settle_with_orm(*, request_id: str, cost: int, log: RequestLogData, now: datetime) -> None:
    with transaction.atomic():
        owner = (
            Reservation.objects.filter(request_id=request_id)
            .values("pk", "account_id", "token_id")
            .first()
        )
        if owner is None:
            raise ValueError(f"No reservation for request id {request_id}.")
        lock_rows(
            accounts=[owner["account_id"]], tokens=[owner["token_id"]], reservations=[owner["pk"]]
        )
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
            return  # Already settled: idempotent.
        user_id, token_id, held, token_held = claimed
        usage_charge(
            request_id=request_id,
            user_id=user_id,
            token_id=token_id,
            cost=cost,
            held=0 if is_late else held,
            token_held=0 if is_late else token_held,
            log=log,
            now=now,
        )


def usage_charge(
    *,
    request_id: str,
    user_id: int,
    token_id: int | None,
    cost: int,
    held: int,
    token_held: int,
    log: RequestLogData,
    now: datetime,
) -> None:
    """Write one request's log row and charge its whole cost; free what it held.

    The ORM's settle, for every path that is not one batch statement. The caller
    has locked the account and the token (`billing.locks.lock_rows`) in its
    transaction. A cost above `held` comes off the balance, below zero if need be:
    the account then owes it, and is told once.
    """
    row = RequestLog.objects.create(
        request_id=request_id, user_id=user_id, token_id=token_id, **_log_fields(log, cost, now)
    )
    if rollups_record(log=row):
        new_ip_notify(log_id=row.pk)
    Account.objects.filter(pk=user_id).update(
        balance=F("balance") - cost,
        reserved=F("reserved") - held,
        used=F("used") + cost,
        request_count=F("request_count") + 1,
    )
    if token_id is not None:
        token_charge(token_id=token_id, charged=cost, token_hold=token_held, log=log, now=now)
    if cost > held and Account.objects.filter(pk=user_id, balance__lt=0).exists():
        account_debt_notify(account_ids=[user_id])


def token_charge(
    *, token_id: int, charged: int, token_hold: int, log: RequestLogData, now: datetime
) -> None:
    """Charge one request to its token: free `token_hold` of its quota, spend `charged`."""
    Token.objects.filter(pk=token_id).update(
        reserved=F("reserved") - token_hold,
        used=F("used") + charged,
        request_count=F("request_count") + 1,
        # An unlimited token (NULL) stays unlimited; a quota never drops below what
        # other requests hold.
        quota_remaining=Case(
            When(quota_remaining__isnull=True, then=None),
            default=Greatest(F("quota_remaining") - charged, F("reserved") - token_hold),
        ),
        last_used_at=now,
        last_used_ip=log.client_ip,
    )


def _log_fields(log: RequestLogData, cost: int, now: datetime) -> dict:
    return {
        "created_at": log.created_at or now,
        "token_name": log.token_name,
        "model": log.model,
        "channel_id": log.channel_id,
        "prompt_tokens": log.prompt_tokens,
        "completion_tokens": log.completion_tokens,
        "cached_tokens": log.cached_tokens,
        "cost": cost,
        "model_ratio": log.model_ratio,
        "completion_ratio": log.completion_ratio,
        "group_ratio": log.group_ratio,
        "cached_ratio": log.cached_ratio,
        "price_per_call": log.price_per_call,
        "client_ip": log.client_ip,
        "status_code": log.status_code,
        "error_code": log.error_code,
        "latency_ms": log.latency_ms,
        "first_token_ms": log.first_token_ms,
        "is_stream": log.is_stream,
        "usage_estimated": log.usage_estimated,
    }


def usage_release(*, request_id: str) -> None:
    """Free the hold of a request that will not be settled (it failed upstream)."""
    with transaction.atomic():
        owner = (
            Reservation.objects.filter(request_id=request_id, status=Reservation.Status.OPEN)
            .values("pk", "account_id", "token_id")
            .first()
        )
        if owner is None:
            return  # Already settled or released, or never reserved.
        lock_rows(
            accounts=[owner["account_id"]], tokens=[owner["token_id"]], reservations=[owner["pk"]]
        )
        claimed = _reservation_close(
            request_id=request_id,
            from_status=Reservation.Status.OPEN,
            to_status=Reservation.Status.RELEASED,
        )
        if claimed is None:
            return  # Settled or released meanwhile.
        user_id, token_id, hold, token_hold = claimed
        Account.objects.filter(pk=user_id).update(reserved=F("reserved") - hold)
        if token_id is not None and token_hold:
            Token.objects.filter(pk=token_id).update(reserved=F("reserved") - token_hold)


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


def reservation_renew(*, request_id: str, lease_seconds: int | None = None) -> bool:
    """Push back the lease of a request still in flight (a long stream); False if not open.

    The relay renews while it streams, so a stream longer than one lease keeps its
    hold and is not released under it by `reservation_release_expired`.
    """
    if lease_seconds is None:
        lease_seconds = settings.COMET_RESERVATION_LEASE_SECONDS
    expires_at = timezone.now() + timedelta(seconds=lease_seconds)
    renewed = Reservation.objects.filter(
        request_id=request_id, status=Reservation.Status.OPEN
    ).update(expires_at=expires_at)
    return renewed == 1


# Awaitable twins for the relay. They run on its database threads, which give their
# connection back to the pool after each call (comet.db).
ausage_reserve = on_database_thread(usage_reserve)
areservation_renew = on_database_thread(reservation_renew)
ausage_settle = on_database_thread(usage_settle)
ausage_settle_many = on_database_thread(usage_settle_many)
ausage_release = on_database_thread(usage_release)
