"""Usage settlement: the one writer of settled requests to the books.

A settled request is written as: its log row → the rollups (`logs.rollups`) → the
"new IP on this token" mark → the account (balance, reserved, used, count) → the
token (reserved, used, quota, last use) → its grant's remaining hold. `settle_many`
does all of that for a batch with:

- ONE statement (and one transaction) on PostgreSQL, built once from the log row's columns
  (`LOG_FACTS`: the fields of `logs.data.RequestLogData`), after the batch's
  accounts, tokens and grants are locked in the one order (`billing.locks`);
- the ORM, one request (and one transaction) at a time, on other databases (the
  embedded SQLite default) and for a request whose grant was closed before it was
  written.

Each request is charged its whole cost. Its grant pays `cost - overrun`; the
overrun (what neither the request's hold nor its grant's unused part covered)
comes straight off the balance, below zero if need be, and the account that owes
money is told once (`billing.services.account_debt_notify`). A balance or a token's
quota that falls below the alert threshold its customer set is told once per fall
(`billing.alerts`), decided in the same statement. A request id already
logged changes nothing: settling twice charges once.
"""

import dataclasses
import functools
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Case, F, When
from django.db.models.functions import Greatest
from django.utils import timezone

from accounts.models import Token
from billing.alerts import (
    low_balance_claim,
    low_balance_email_enqueue,
    token_quota_alert_claim,
    token_quota_alert_email_enqueue,
)
from billing.locks import lock_rows
from billing.models import Account, Reservation
from billing.services import account_debt_notify
from logs.data import RequestLogData
from logs.models import RequestLog
from logs.rollups import SETTLE_CTE, SETTLE_SELECT, rollups_record
from logs.services import new_ip_notify

logger = logging.getLogger(__name__)

# The columns of a log row that come from the request's facts, in one place.
LOG_FACTS = tuple(field.name for field in dataclasses.fields(RequestLogData))


@dataclasses.dataclass(frozen=True, slots=True)
class Settlement:
    """One request spent from a grant: its id, its whole cost, the facts of its row.

    `overrun` is the part of `cost` that neither the request's hold nor its grant's
    unused part covered: it is charged to the balance directly.
    """

    grant_id: int
    request_id: str
    cost: int
    log: RequestLogData
    overrun: int = 0


def log_fields(log: RequestLogData, *, cost: int, now: datetime) -> dict:
    """Return a log row's columns for these facts and this cost."""
    fields = {name: getattr(log, name) for name in LOG_FACTS}
    fields["created_at"] = log.created_at or now
    fields["cost"] = cost
    return fields


def settle_many(settlements: Sequence[Settlement], *, lease_seconds: int) -> None:
    """Write settled requests: log rows, rollups, grant, account and token sums.

    ONE statement on PostgreSQL; the ORM elsewhere. A request whose grant was
    closed under it (its lease ended while the process stalled, its token was
    deleted) is charged its whole cost from the account.
    """
    unique: dict[str, Settlement] = {}
    for settlement in settlements:
        if settlement.cost < 0 or not 0 <= settlement.overrun <= settlement.cost:
            raise ValueError("A cost cannot be negative, nor an overrun outside it.")
        unique.setdefault(settlement.request_id, settlement)
    batch = list(unique.values())
    if not batch:
        return
    now = timezone.now()
    if not uses_one_statement():
        for settlement in batch:
            _settle_with_orm(settlement, now=now)
        return
    grant_ids = sorted({settlement.grant_id for settlement in batch})
    owners = list(
        Reservation.objects.filter(pk__in=grant_ids).values_list("account_id", "token_id")
    )
    columns: dict[str, list] = {name: [] for name in ("grant_id", "request_id", "overrun")}
    for settlement in batch:
        columns["grant_id"].append(settlement.grant_id)
        columns["request_id"].append(settlement.request_id)
        columns["overrun"].append(settlement.overrun)
        for name, value in log_fields(settlement.log, cost=settlement.cost, now=now).items():
            columns.setdefault(name, []).append(value)
    parameters: dict[str, Any] = {
        **columns,
        "now": now,
        "expires_at": now + timedelta(seconds=lease_seconds),
    }
    with transaction.atomic():
        lock_rows(
            accounts=[account_id for account_id, _ in owners],
            tokens=[token_id for _, token_id in owners],
            reservations=grant_ids,
        )
        with connection.cursor() as cursor:
            cursor.execute(_settle_statement(), parameters)
            open_grants, owing, low_balance, quota_low, new_ip_log_ids = cursor.fetchone()
        for log_id in new_ip_log_ids or ():
            new_ip_notify(log_id=log_id)
        if owing:
            account_debt_notify(account_ids=owing)
        if low_balance:
            low_balance_email_enqueue(account_ids=low_balance)
        if quota_low:
            token_quota_alert_email_enqueue(token_ids=quota_low)
    open_grants = set(open_grants or ())
    for settlement in batch:
        if settlement.grant_id not in open_grants:
            _settle_late(settlement, now=now)


def uses_one_statement() -> bool:
    """True where the batch statement runs (PostgreSQL); the ORM writes elsewhere."""
    return connection.vendor == "postgresql"


@functools.cache
def _settle_statement() -> str:
    """Return the batch statement, built from the log row's columns (PostgreSQL).

    `input` is the batch, one row per request id. Requests of a grant that is no
    longer open are left to `_settle_late`. Each grant, account and token row is
    written once per batch; the rollups (`logs.rollups.SETTLE_CTE`) hang off `log`.
    """
    account = Account._meta.db_table
    token = Token._meta.db_table
    reservation = Reservation._meta.db_table
    log_table = RequestLog._meta.db_table
    row_columns = ("cost", *LOG_FACTS)
    typed = [("grant_id", "bigint"), ("request_id", "varchar"), ("overrun", "bigint")] + [
        (name, _column_type(name)) for name in row_columns
    ]
    arrays = ", ".join(f"%({name})b::{kind}[]" for name, kind in typed)
    names = ", ".join(name for name, _ in typed)
    log_columns = ", ".join(("request_id", "user_id", "token_id", *row_columns))
    log_values = (
        ", ".join(("i.request_id", "g.account_id", "g.token_id"))
        + ", "
        + ", ".join(f"i.{name}" for name in row_columns)
    )
    return f"""
WITH input AS (
    SELECT * FROM unnest({arrays}) WITH ORDINALITY AS i({names}, ord)
), grants AS (
    SELECT r.id, r.account_id, r.token_id, r.token_amount > 0 AS on_quota
    FROM {reservation} r
    WHERE r.id IN (SELECT grant_id FROM input) AND r.status = 'open'
), log AS (
    INSERT INTO {log_table} ({log_columns})
    SELECT {log_values}
    FROM input i JOIN grants g ON g.id = i.grant_id ORDER BY i.ord
    ON CONFLICT (request_id) DO NOTHING
    RETURNING *
), spent AS (
    SELECT i.grant_id, g.account_id, g.token_id, g.on_quota, log.cost,
        log.cost - i.overrun AS held, log.client_ip, i.ord
    FROM log JOIN input i ON i.request_id = log.request_id JOIN grants g ON g.id = i.grant_id
), grant_sums AS (
    SELECT grant_id, sum(held) AS held FROM spent GROUP BY grant_id
), grant_spent AS (
    UPDATE {reservation} AS r
    SET amount = r.amount - s.held,
        token_amount = CASE WHEN r.token_amount > 0 THEN r.token_amount - s.held ELSE 0 END,
        expires_at = %(expires_at)s
    FROM grant_sums s WHERE r.id = s.grant_id
    RETURNING r.id
), account_sums AS (
    SELECT account_id, sum(cost) AS cost, sum(held) AS held, count(*) AS requests
    FROM spent GROUP BY account_id
), low_balance AS (
    -- Accounts this batch takes below their low-balance threshold, their alert armed:
    -- read on rows this transaction locked, so the UPDATE below sees the same values.
    SELECT a.user_id FROM {account} a JOIN account_sums s ON a.user_id = s.account_id
    WHERE a.low_balance_alerted_at IS NULL AND a.balance - s.cost < a.low_balance_threshold
), account AS (
    UPDATE {account} AS a
    SET balance = a.balance - s.cost, reserved = a.reserved - s.held,
        used = a.used + s.cost, request_count = a.request_count + s.requests,
        low_balance_alerted_at = CASE WHEN a.user_id IN (SELECT user_id FROM low_balance)
            THEN %(now)s ELSE a.low_balance_alerted_at END
    FROM account_sums s
    WHERE a.user_id = s.account_id
    RETURNING a.user_id, a.balance
), token_sums AS (
    SELECT token_id, sum(cost) AS cost,
        sum(CASE WHEN on_quota THEN held ELSE 0 END) AS token_held, count(*) AS requests,
        (array_agg(client_ip ORDER BY ord DESC))[1] AS client_ip
    FROM spent WHERE token_id IS NOT NULL GROUP BY token_id
), token_low AS (
    -- Tokens whose remaining quota this batch takes below their alert threshold.
    SELECT t.id FROM {token} t JOIN token_sums s ON t.id = s.token_id
    WHERE t.quota_alerted_at IS NULL AND t.quota_remaining IS NOT NULL
        AND GREATEST(t.quota_remaining - s.cost, t.reserved - s.token_held)
            < t.quota_alert_threshold
), token AS (
    UPDATE {token} AS t
    SET reserved = t.reserved - s.token_held, used = t.used + s.cost,
        request_count = t.request_count + s.requests,
        -- What passes the quota leaves it at what other requests hold: exhausted.
        quota_remaining = CASE WHEN t.quota_remaining IS NULL THEN NULL ELSE
            GREATEST(t.quota_remaining - s.cost, t.reserved - s.token_held) END,
        last_used_at = %(now)s, last_used_ip = s.client_ip,
        quota_alerted_at = CASE WHEN t.id IN (SELECT id FROM token_low)
            THEN %(now)s ELSE t.quota_alerted_at END
    FROM token_sums s WHERE t.id = s.token_id
    RETURNING t.id
){SETTLE_CTE}
SELECT (SELECT array_agg(id) FROM grants),
    (SELECT array_agg(user_id) FROM account WHERE balance < 0),
    (SELECT array_agg(user_id) FROM low_balance),
    (SELECT array_agg(id) FROM token_low), {SETTLE_SELECT}
"""  # noqa: S608 (table and column names come from our models, never from input)


def _column_type(name: str) -> str:
    """Return the base type of a log column: `varchar`, not `varchar(200)`.

    The arrays are cast to base types; the INSERT casts each value to its column, so
    a value too long or too precise is refused there as before, and the arrays are
    not checked element by element a second time.
    """
    field = RequestLog._meta.get_field(name)
    kind = field.db_type(connection) if isinstance(field, models.Field) else None
    if kind is None:
        raise TypeError(f"RequestLog.{name} is not a column.")
    return kind.split("(")[0]


def _settle_with_orm(settlement: Settlement, *, now: datetime) -> None:
    """`settle_many` for one request, with the ORM."""
    with transaction.atomic():
        owner = (
            Reservation.objects.filter(pk=settlement.grant_id)
            .values("account_id", "token_id")
            .first()
        )
        if owner is not None:
            lock_rows(
                accounts=[owner["account_id"]],
                tokens=[owner["token_id"]],
                reservations=[settlement.grant_id],
            )
        grant = Reservation.objects.filter(
            pk=settlement.grant_id, status=Reservation.Status.OPEN
        ).first()
        if grant is None:
            _settle_late(settlement, now=now)
            return
        if RequestLog.objects.filter(request_id=settlement.request_id).exists():
            return
        held = settlement.cost - settlement.overrun
        on_quota = grant.token_amount > 0
        Reservation.objects.filter(pk=grant.pk).update(
            amount=F("amount") - held,
            token_amount=F("token_amount") - held if on_quota else 0,
        )
        _charge(
            settlement,
            user_id=grant.account_id,
            token_id=grant.token_id,
            held=held,
            token_held=held if on_quota else 0,
            now=now,
        )


def _settle_late(settlement: Settlement, *, now: datetime) -> None:
    """Charge a request whose grant was freed before it was written: its whole cost."""
    with transaction.atomic():
        grant = (
            Reservation.objects.filter(pk=settlement.grant_id)
            .values("account_id", "token_id")
            .first()
        )
        if grant is None:
            logger.error(
                "Request %s settled against grant %d, which no longer exists: not charged.",
                settlement.request_id,
                settlement.grant_id,
            )
            return
        lock_rows(accounts=[grant["account_id"]], tokens=[grant["token_id"]])
        if RequestLog.objects.filter(request_id=settlement.request_id).exists():
            return
        # Nothing is held for it any more: all of it comes off the balance.
        _charge(
            settlement,
            user_id=grant["account_id"],
            token_id=grant["token_id"],
            held=0,
            token_held=0,
            now=now,
        )


def _charge(
    settlement: Settlement,
    *,
    user_id: int,
    token_id: int | None,
    held: int,
    token_held: int,
    now: datetime,
) -> None:
    """Write one request's row and rollups and charge its whole cost; free what it held.

    The caller locked the account and the token in its transaction. A cost above
    `held` comes off the balance, below zero if need be: the account then owes it.
    """
    cost = settlement.cost
    row = RequestLog.objects.create(
        request_id=settlement.request_id,
        user_id=user_id,
        token_id=token_id,
        **log_fields(settlement.log, cost=cost, now=now),
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
        Token.objects.filter(pk=token_id).update(
            reserved=F("reserved") - token_held,
            used=F("used") + cost,
            request_count=F("request_count") + 1,
            # An unlimited token (NULL) stays unlimited; a quota never drops below
            # what other requests hold.
            quota_remaining=Case(
                When(quota_remaining__isnull=True, then=None),
                default=Greatest(F("quota_remaining") - cost, F("reserved") - token_held),
            ),
            last_used_at=now,
            last_used_ip=settlement.log.client_ip,
        )
        token_quota_alert_claim(token_id=token_id)
    low_balance_claim(account_id=user_id)
    if cost > held and Account.objects.filter(pk=user_id, balance__lt=0).exists():
        account_debt_notify(account_ids=[user_id])
