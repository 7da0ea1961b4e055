"""Credit grants: admit requests in memory against money held in PostgreSQL in bulk.

`usage_reserve` writes the hot account row once per request, and a row takes at most
about as many committed changes per second as `pgbench` reaches on it. A busy account
needs more, so a relay process takes its money in **grants** instead, the way a
telephone switch asks the charging system for a block of credit and spends it call by
call:

- A grant is an open `Reservation` (request id `grant:<hex>`) holding a block of the
  account's balance, and of the token's quota when it has one, taken by one small
  transaction (`grant_take`: account row, then token row, locked in that order).
- `CreditMeter.reserve` holds a request's upper-bound cost against the process's
  grant for that token: a few dictionary operations under a lock, no database. When
  the grant cannot cover it, ONE caller takes a new grant (big enough for about a
  second of this token's spending, at most `COMET_GRANT_MAX_MICRO_USD` and a quarter
  of what the account has free) and the others wait for it.
- `CreditMeter.settle` frees the rest of the hold into the grant and queues the
  request's log row; `release` gives the whole hold back.
- A flusher thread writes what was spent every `COMET_GRANT_FLUSH_MS` (on a connection
  of the process's pool, given back after each round: `comet.db`): ONE statement
  per batch inserts the log rows (and rollups) and moves each request's cost out of
  its grant into the account's and the token's used money (`balance`, `reserved`,
  `used`, request counts). The hot row is written once per batch, not per request.
- A grant takes new holds for at most `COMET_GRANT_MAX_AGE_SECONDS` (1 s). Then it is
  retired: at the next write its unused part goes back to the account, and the
  grant is closed once its last request settled and was written. So every second
  each busy token's next grant checks again that the token is enabled and not
  expired and that the account is not frozen: a change of these is seen within
  about a second, as the token cache promises.

The books stay exact at every commit: a grant's `amount` is what it still holds, so
`Account.reserved` = Σ open reservations and balance = Σ ledger - Σ request costs hold
as `reconcile` checks them. An answered request is charged its whole actual cost:
what its hold and its grant's unused part cannot cover (an upstream that answered
more than the hold allowed for) comes off the balance directly, below zero if need
be; the account then owes that overrun, is refused until it is paid back, and is
told once (`billing.services.account_debt_notify`).

Limits, by design:
- Near the end of a balance, a request can be refused while another relay process
  still holds the last few requests' worth of it in its grant; that grant is returned
  within about `COMET_GRANT_MAX_AGE_SECONDS`. One process alone refuses exactly when
  the balance cannot cover the request: before refusing, it gives back what its other
  grants on the account hold unused and asks again.
- A process that dies loses the requests it settled but had not written yet (at most
  one flush interval, or `COMET_GRANT_MAX_PENDING` requests): they are not charged.
  Its grants stay held until their lease (`COMET_GRANT_LEASE_SECONDS`, renewed while
  the process lives) ends and `reservation_release_expired` returns them.
- Deleting a token releases its grants at once (`billing.services.token_delete`);
  requests already admitted from them are charged in full when they settle, and the
  token's grants take no new holds after `COMET_GRANT_MAX_AGE_SECONDS`.

Locks: accounts, then tokens, then grants, each by id, through `billing.locks`.
"""

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Token
from billing.locks import lock_rows
from billing.metering import (
    Settlement,
    UsageRefused,
    _balance_refusal,
    _duplicate,
    _execute_one,
    _token_refusal,
    settle_parameters,
    usage_charge,
)
from billing.models import Account, Reservation
from billing.services import account_debt_notify
from comet.db import connection_return
from logs.models import RequestLog, RequestLogData
from logs.rollups import SETTLE_CTE, SETTLE_SELECT
from logs.services import new_ip_notify

logger = logging.getLogger(__name__)

GRANT_PREFIX = "grant:"

# How long a "balance too low" answer is reused for requests at least as big (a
# top-up made meanwhile is seen after at most this long).
REFUSAL_MEMORY_SECONDS = 0.1
# A request waits at most this long for the writer to catch up (the database down or
# far behind), then is refused with "billing_unavailable" (the relay answers 503).
BACKLOG_WAIT_SECONDS = 5.0

_ACCOUNT = Account._meta.db_table
_TOKEN = Token._meta.db_table
_RESERVATION = Reservation._meta.db_table
_LOG = RequestLog._meta.db_table


@dataclass(frozen=True, slots=True)
class GrantSettlement(Settlement):
    """One request spent from a grant: written to the books by `grant_settle_many`.

    `overrun` is the part of `cost` that neither the request's hold nor its grant's
    unused part covered: it is charged to the balance directly, below zero if need be.
    """

    grant_id: int
    overrun: int = 0


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
    one is made otherwise). Raises UsageRefused, as `usage_reserve` would, when not
    even `minimum` is free or the token is disabled, expired or gone; a refusal
    changes nothing. Locks: account, token, then the grant (`billing.locks`).
    """
    now = timezone.now()
    with transaction.atomic():
        lock_rows(accounts=[user_id], tokens=[token_id], reservations=[grant_id])
        account = (
            Account.objects.filter(pk=user_id).values("balance", "reserved", "is_frozen").first()
        )
        if account is None or account["is_frozen"]:
            raise _balance_refusal(user_id)
        token = (
            Token.objects.filter(pk=token_id, user_id=user_id, is_enabled=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .values("quota_remaining", "reserved")
            .first()
        )
        if token is None:
            raise _token_refusal(token_id=token_id, user_id=user_id, now=now)
        account_free = account["balance"] - account["reserved"]
        if account_free < minimum:
            raise _balance_refusal(user_id)
        free = account_free
        quota = token["quota_remaining"]
        on_quota = quota is not None
        if quota is not None:
            free = min(free, quota - token["reserved"])
            if free < minimum:
                raise _token_refusal(token_id=token_id, user_id=user_id, now=now)
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
    `reservation_release_expired` freed it, or its token was deleted).
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


# Spend a batch of requests from their grants in ONE statement, run after
# `lock_rows` locked the batch's accounts, tokens and grants (in that order). A
# request id already logged is skipped (ON CONFLICT): settling twice charges once.
# Requests of a grant that is no longer open (its lease ended, its token was
# deleted) are left to `_settle_late`. Each request is charged its whole cost: its
# grant pays `cost - overrun`, and the overrun (what neither its hold nor its
# grant's unused part covered) comes straight off the balance, below zero if need
# be. Each grant, account and token row is written once per batch.
_GRANT_SETTLE_SQL = f"""
WITH input AS (
    SELECT * FROM unnest(
        %(grant_id)b::bigint[], %(request_id)b::varchar[], %(cost)b::bigint[],
        %(overrun)b::bigint[],
        %(created_at)b::timestamptz[], %(token_name)b::varchar[], %(model)b::varchar[],
        %(channel_id)b::bigint[], %(prompt_tokens)b::integer[], %(completion_tokens)b::integer[],
        %(cached_tokens)b::integer[], %(model_ratio)b::numeric[], %(completion_ratio)b::numeric[],
        %(group_ratio)b::numeric[], %(price_per_call)b::bigint[], %(client_ip)b::inet[],
        %(status_code)b::integer[], %(error_code)b::varchar[], %(latency_ms)b::integer[],
        %(first_token_ms)b::integer[], %(is_stream)b::boolean[], %(usage_estimated)b::boolean[],
        %(cached_ratio)b::numeric[]
    ) WITH ORDINALITY AS i(
        grant_id, request_id, cost, overrun, created_at, token_name, model, channel_id,
        prompt_tokens, completion_tokens, cached_tokens, model_ratio, completion_ratio,
        group_ratio, price_per_call, client_ip, status_code, error_code, latency_ms,
        first_token_ms, is_stream, usage_estimated, cached_ratio, ord
    )
), grants AS (
    SELECT r.id, r.account_id, r.token_id, r.token_amount > 0 AS on_quota
    FROM {_RESERVATION} r
    WHERE r.id IN (SELECT grant_id FROM input) AND r.status = 'open'
), log AS (
    INSERT INTO {_LOG} (
        created_at, request_id, user_id, token_id, token_name, model, channel_id,
        prompt_tokens, completion_tokens, cached_tokens, cost, model_ratio, completion_ratio,
        group_ratio, price_per_call, client_ip, status_code, error_code, latency_ms,
        first_token_ms, is_stream, usage_estimated, cached_ratio
    )
    SELECT i.created_at, i.request_id, g.account_id, g.token_id, i.token_name, i.model,
        i.channel_id, i.prompt_tokens, i.completion_tokens, i.cached_tokens, i.cost,
        i.model_ratio, i.completion_ratio, i.group_ratio, i.price_per_call, i.client_ip,
        i.status_code, i.error_code, i.latency_ms, i.first_token_ms, i.is_stream,
        i.usage_estimated, i.cached_ratio
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
    UPDATE {_RESERVATION} AS r
    SET amount = r.amount - s.held,
        token_amount = CASE WHEN r.token_amount > 0 THEN r.token_amount - s.held ELSE 0 END,
        expires_at = %(expires_at)s
    FROM grant_sums s WHERE r.id = s.grant_id
    RETURNING r.id
), account_sums AS (
    SELECT account_id, sum(cost) AS cost, sum(held) AS held, count(*) AS requests
    FROM spent GROUP BY account_id
), account AS (
    UPDATE {_ACCOUNT} AS a
    SET balance = a.balance - s.cost, reserved = a.reserved - s.held,
        used = a.used + s.cost, request_count = a.request_count + s.requests
    FROM account_sums s
    WHERE a.user_id = s.account_id
    RETURNING a.user_id, a.balance
), token_sums AS (
    SELECT token_id, sum(cost) AS cost,
        sum(CASE WHEN on_quota THEN held ELSE 0 END) AS token_held, count(*) AS requests,
        (array_agg(client_ip ORDER BY ord DESC))[1] AS client_ip
    FROM spent WHERE token_id IS NOT NULL GROUP BY token_id
), token AS (
    UPDATE {_TOKEN} AS t
    SET reserved = t.reserved - s.token_held, used = t.used + s.cost,
        request_count = t.request_count + s.requests,
        -- What passes the quota leaves it at what other requests hold: exhausted.
        quota_remaining = CASE WHEN t.quota_remaining IS NULL THEN NULL ELSE
            GREATEST(t.quota_remaining - s.cost, t.reserved - s.token_held) END,
        last_used_at = %(now)s, last_used_ip = s.client_ip
    FROM token_sums s WHERE t.id = s.token_id
    RETURNING t.id
){SETTLE_CTE}
SELECT (SELECT array_agg(id) FROM grants),
    (SELECT array_agg(user_id) FROM account WHERE balance < 0), {SETTLE_SELECT}
"""  # noqa: S608


def grant_settle_many(settlements: Sequence[GrantSettlement], *, lease_seconds: int) -> None:
    """Write requests spent from grants: log rows, rollups, grant, account and token sums.

    ONE statement on PostgreSQL, after the rows are locked in the one order. A
    request id already logged changes nothing. A request whose grant was closed
    under it (the lease ended while the process was stalled, or its token was
    deleted) is charged its whole cost from the account (`_settle_late`). An
    account that this leaves owing money is told once (`account_debt_notify`).
    """
    unique: dict[str, GrantSettlement] = {}
    for settlement in settlements:
        if settlement.cost < 0 or not 0 <= settlement.overrun <= settlement.cost:
            raise ValueError("A cost cannot be negative, nor an overrun outside it.")
        unique.setdefault(settlement.request_id, settlement)
    batch = list(unique.values())
    if not batch:
        return
    now = timezone.now()
    if connection.vendor != "postgresql":
        for settlement in batch:
            _settle_with_orm(settlement, now=now)
        return
    grant_ids = sorted({settlement.grant_id for settlement in batch})
    owners = list(
        Reservation.objects.filter(pk__in=grant_ids).values_list("account_id", "token_id")
    )
    parameters = {
        **settle_parameters(batch, now),
        "grant_id": [settlement.grant_id for settlement in batch],
        "overrun": [settlement.overrun for settlement in batch],
        "expires_at": now + timedelta(seconds=lease_seconds),
    }
    with transaction.atomic():
        lock_rows(
            accounts=[account_id for account_id, _ in owners],
            tokens=[token_id for _, token_id in owners],
            reservations=grant_ids,
        )
        open_grants, owing, new_ip_log_ids = _execute_one(_GRANT_SETTLE_SQL, parameters)
        for log_id in new_ip_log_ids or ():
            new_ip_notify(log_id=log_id)
        if owing:
            account_debt_notify(account_ids=owing)
    open_grants = set(open_grants or ())
    for settlement in batch:
        if settlement.grant_id not in open_grants:
            _settle_late(settlement, now=now)


def _settle_with_orm(settlement: GrantSettlement, *, now: datetime) -> None:
    """`grant_settle_many` for one request, with the ORM (SQLite, the embedded default)."""
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
        usage_charge(
            request_id=settlement.request_id,
            user_id=grant.account_id,
            token_id=grant.token_id,
            cost=settlement.cost,
            held=held,
            token_held=held if on_quota else 0,
            log=settlement.log,
            now=now,
        )


def _settle_late(settlement: GrantSettlement, *, now: datetime) -> None:
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
        usage_charge(
            request_id=settlement.request_id,
            user_id=grant["account_id"],
            token_id=grant["token_id"],
            cost=settlement.cost,
            held=0,
            token_held=0,
            log=settlement.log,
            now=now,
        )


@dataclass(eq=False, slots=True)
class _Grant:
    id: int
    user_id: int
    token_id: int
    available: int
    taken_at: float
    holds: int = 0
    retired: bool = False


@dataclass(slots=True)
class _Hold:
    grant: _Grant
    amount: int


@dataclass(slots=True)
class _TokenState:
    """Per token: who is taking its next grant, and how big grants should be."""

    taking: threading.Lock = field(default_factory=threading.Lock)
    spent: int = 0  # spent from the current grant, to size the next one
    # The last "balance too low": requests as big are refused without asking again
    # until `refused_until` (or until this process returns a grant).
    refusal: UsageRefused | None = None
    refused_amount: int = 0
    refused_until: float = 0.0


class CreditMeter:
    """Reserve, settle and release requests against this process's grants; thread-safe.

    One per process (the relay's). `reserve` raises UsageRefused exactly as
    `usage_reserve` does; `settle` and `release` never touch the database: the
    flusher thread writes settled requests every `flush_seconds` (or sooner when
    `max_pending` wait), and `reserve` waits while that many are unwritten.
    """

    def __init__(
        self,
        *,
        max_grant: int | None = None,
        max_age_seconds: float | None = None,
        lease_seconds: int | None = None,
        flush_seconds: float | None = None,
        max_pending: int | None = None,
        background: bool = True,
    ) -> None:
        self.max_grant = max_grant or settings.COMET_GRANT_MAX_MICRO_USD
        self.max_age = (
            settings.COMET_GRANT_MAX_AGE_SECONDS if max_age_seconds is None else max_age_seconds
        )
        self.lease_seconds = lease_seconds or settings.COMET_GRANT_LEASE_SECONDS
        self.flush_seconds = (
            settings.COMET_GRANT_FLUSH_MS / 1000 if flush_seconds is None else flush_seconds
        )
        self.max_pending = max_pending or settings.COMET_GRANT_MAX_PENDING
        # Without the background writer nothing is written until `flush` is called.
        self.background = background
        self.refusal_memory_seconds = REFUSAL_MEMORY_SECONDS
        # How long `reserve` waits for the writer to catch up before refusing.
        self.backlog_wait_seconds = BACKLOG_WAIT_SECONDS
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._current: dict[int, _Grant] = {}  # token id -> the grant taking new holds
        self._grants: dict[int, _Grant] = {}  # grant id -> every grant not yet returned
        self._holds: dict[str, _Hold] = {}
        self._tokens: dict[int, _TokenState] = {}
        self._pending: list[GrantSettlement] = []
        self._flusher: threading.Thread | None = None
        self._closed = False
        self._renewed_at = time.monotonic()

    # --- the request path ---------------------------------------------------

    def reserve(self, *, token_id: int, user_id: int, request_id: str, amount: int) -> None:
        """Hold `amount` for one request, or raise UsageRefused and change nothing."""
        if amount <= 0:
            raise ValueError("A reservation holds a positive amount.")
        with self._lock:
            give_up_at = time.monotonic() + self.backlog_wait_seconds
            while len(self._pending) >= self.max_pending and self._flusher is not None:
                self._wake.set()
                left = give_up_at - time.monotonic()
                if left <= 0:
                    # The database is down or far behind: say so rather than pile up.
                    raise UsageRefused(
                        "billing_unavailable",
                        "Usage cannot be recorded right now. Retry in a few seconds.",
                    )
                self._room.wait(timeout=left)
            if self._hold_from_grant(token_id, user_id, request_id, amount):
                return
            state = self._tokens.setdefault(token_id, _TokenState())
            if (
                state.refusal is not None
                and amount >= state.refused_amount
                and time.monotonic() < state.refused_until
            ):
                raise UsageRefused(state.refusal.code, state.refusal.message)
        with state.taking:
            try:
                self._take_and_hold(state, token_id, user_id, request_id, amount)
            except UsageRefused as refusal:
                if refusal.code == "insufficient_quota":
                    with self._lock:
                        state.refusal = refusal
                        state.refused_amount = amount
                        state.refused_until = time.monotonic() + self.refusal_memory_seconds
                raise

    def try_reserve(self, *, token_id: int, user_id: int, request_id: str, amount: int) -> bool:
        """Hold `amount` from a current grant if one covers it; False when a grant is needed."""
        if amount <= 0:
            raise ValueError("A reservation holds a positive amount.")
        with self._lock:
            if len(self._pending) >= self.max_pending:
                return False
            return self._hold_from_grant(token_id, user_id, request_id, amount)

    def settle(self, *, request_id: str, cost: int, log: RequestLogData) -> bool:
        """Charge a held request's actual cost; False if it holds nothing (settled, unknown)."""
        if cost < 0:
            raise ValueError("A cost cannot be negative.")
        with self._lock:
            hold = self._holds.pop(request_id, None)
            if hold is None:
                return False
            grant = hold.grant
            overrun = 0
            if cost > hold.amount:
                # Charged in full: the grant's unused part first, then the balance.
                taken = min(cost - hold.amount, grant.available)
                grant.available -= taken
                overrun = cost - hold.amount - taken
                if overrun:
                    logger.warning(
                        "Request %s cost %d micro-USD, %d more than its hold and grant; "
                        "charged to the balance.",
                        request_id,
                        cost,
                        overrun,
                    )
            else:
                grant.available += hold.amount - cost
            grant.holds -= 1
            state = self._tokens.get(grant.token_id)
            if state is not None:
                state.spent += cost
            self._pending.append(
                GrantSettlement(
                    grant_id=grant.id, request_id=request_id, cost=cost, overrun=overrun, log=log
                )
            )
            self._start_flusher()
            return True

    def release(self, *, request_id: str) -> None:
        """Give a failed request's hold back to its grant."""
        with self._lock:
            hold = self._holds.pop(request_id, None)
            if hold is not None:
                hold.grant.available += hold.amount
                hold.grant.holds -= 1

    @property
    def pending(self) -> int:
        """Return how many settled requests are not written yet."""
        return len(self._pending)

    # --- grants -----------------------------------------------------------------

    def _hold_from_grant(self, token_id: int, user_id: int, request_id: str, amount: int) -> bool:
        if request_id in self._holds:
            raise _duplicate(request_id)
        grant = self._current.get(token_id)
        if grant is None or grant.user_id != user_id:
            return False
        if time.monotonic() - grant.taken_at >= self.max_age:
            self._retire(grant)
            return False
        if grant.available < amount:
            return False
        grant.available -= amount
        grant.holds += 1
        self._holds[request_id] = _Hold(grant, amount)
        return True

    def _retire(self, grant: _Grant) -> None:
        grant.retired = True
        if self._current.get(grant.token_id) is grant:
            del self._current[grant.token_id]
        self._wake.set()

    def _take_and_hold(
        self, state: _TokenState, token_id: int, user_id: int, request_id: str, amount: int
    ) -> None:
        """Add to this token's grant (or take one) and hold `amount` from it; or refuse.

        Only what the grant lacks is asked for at the least, so one process refuses
        exactly when its grant and the account's free money together fall short.
        """
        gave_back = False
        while True:
            with self._lock:
                if self._hold_from_grant(token_id, user_id, request_id, amount):
                    return
                current = self._current.get(token_id)
                if current is not None and current.user_id != user_id:
                    self._retire(current)
                    current = None
                shortfall = amount - (current.available if current is not None else 0)
                # Size for about one max-age of this token's recent spending.
                desired = min(self.max_grant, max(64 * amount, 2 * state.spent))
                state.spent = 0
            try:
                # The flusher must not write this grant while we lock account, token, grant.
                with self._flushing:
                    grant_id, granted = grant_take(
                        token_id=token_id,
                        user_id=user_id,
                        minimum=shortfall,
                        desired=max(desired, shortfall),
                        lease_seconds=self.lease_seconds,
                        grant_id=current.id if current is not None else None,
                    )
            except UsageRefused as refusal:
                if refusal.code != "insufficient_quota" or gave_back:
                    raise
                # Before refusing, give back what this process holds of the account
                # elsewhere (retired grants, other tokens' grants) and ask once more:
                # one process alone refuses only when the money is really short.
                if not self._retire_for(user_id, keep_token_id=token_id):
                    raise
                self.flush()
                gave_back = True
                continue
            with self._lock:
                grant = self._grants.get(grant_id)
                if grant is None:
                    if current is not None:
                        self._retire(current)  # it was closed under us: a new one was made
                    grant = self._grants[grant_id] = _Grant(
                        id=grant_id,
                        user_id=user_id,
                        token_id=token_id,
                        available=0,
                        taken_at=time.monotonic(),
                    )
                    self._current[token_id] = grant
                grant.available += granted
                self._start_flusher()
            # Other requests may have used the new money first: then ask again.

    def _retire_for(self, user_id: int, *, keep_token_id: int) -> bool:
        """Retire the account's grants but this token's; True if any money can come back."""
        with self._lock:
            for grant in list(self._current.values()):
                if grant.user_id == user_id and grant.token_id != keep_token_id:
                    self._retire(grant)
            return any(
                grant.retired and grant.user_id == user_id and (grant.available or not grant.holds)
                for grant in self._grants.values()
            )

    # --- writing ----------------------------------------------------------------

    def _start_flusher(self) -> None:
        if self._flusher is None and not self._closed and self.background:
            self._flusher = threading.Thread(
                target=self._run_flusher, name="comet-credit-meter", daemon=True
            )
            self._flusher.start()

    def _run_flusher(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                # What was not written stays queued for the next round.
                logger.exception("Writing settled requests failed; retrying")
                time.sleep(self.flush_seconds or 0.01)
            finally:
                # Back to the pool after each round: the writer holds no connection
                # while it waits, and draws from the same bounded pool as requests.
                connection_return()

    def flush(self) -> None:
        """Write every settled request, then return the retired grants nothing holds."""
        with self._flushing:
            now = time.monotonic()
            with self._lock:
                batch = self._pending
                self._pending = []
                for grant in list(self._current.values()):
                    if now - grant.taken_at >= self.max_age:
                        self._retire(grant)
                returnable = [g for g in self._grants.values() if g.retired and g.holds == 0]
                live = [g.id for g in self._grants.values() if g not in returnable]
                # A retired grant still holding requests gives back its unused part now.
                unused = [
                    (g, g.available)
                    for g in self._grants.values()
                    if g.retired and g.holds and g.available > 0
                ]
                for grant, _available in unused:
                    grant.available = 0
            written = 0
            try:
                while written < len(batch):
                    chunk = batch[written : written + settings.RELAY_SETTLE_BATCH_SIZE]
                    self._write(chunk)
                    written += len(chunk)
            except DatabaseError:
                with self._lock:
                    # Not written (the database is unreachable): back to the front of
                    # the queue, in order, for the next round.
                    self._pending[:0] = batch[written:]
                    self._room.notify_all()
                raise
            with self._lock:
                self._room.notify_all()
            for grant, available in unused:
                try:
                    grant_return(grant_id=grant.id, amount=available)
                except DatabaseError:
                    with self._lock:
                        grant.available += available
                    raise
                self._money_back(grant)
            for grant in returnable:
                grant_return(grant_id=grant.id)
                with self._lock:
                    self._grants.pop(grant.id, None)
                self._money_back(grant)
            if live and now - self._renewed_at >= self.lease_seconds / 3:
                grant_renew(grant_ids=live, lease_seconds=self.lease_seconds)
                self._renewed_at = now

    def _money_back(self, grant: _Grant) -> None:
        with self._lock:
            state = self._tokens.get(grant.token_id)
            if state is not None:
                state.refusal = None  # money came back: ask again

    def _write(self, chunk: list[GrantSettlement]) -> None:
        try:
            grant_settle_many(chunk, lease_seconds=self.lease_seconds)
        except (OperationalError, InterfaceError):
            raise
        except DatabaseError:
            # A row the database refuses must not hold up the others: one by one.
            logger.exception("Writing %d settled requests failed; one by one", len(chunk))
            for settlement in chunk:
                self._write_alone(settlement)

    def _write_alone(self, settlement: GrantSettlement) -> None:
        """Write one request; if its row is refused, again without the refused detail.

        An answered request is never dropped: its cost reaches the books even when a
        detail of its log row (an address, a text) cannot be stored as given. One
        refused even then stays queued, and is retried at every flush.
        """
        for attempt in (settlement, replace(settlement, log=settlement.log.without_details())):
            try:
                grant_settle_many([attempt], lease_seconds=self.lease_seconds)
            except (OperationalError, InterfaceError):
                raise
            except DatabaseError:
                logger.exception("Request %s could not be written", settlement.request_id)
            else:
                return
        with self._lock:
            self._pending.append(settlement)

    def return_all(self) -> None:
        """Write everything and give back every grant no request holds part of now."""
        with self._lock:
            for grant in list(self._current.values()):
                self._retire(grant)
        self.flush()

    def close(self) -> None:
        """Write everything and return every grant nothing holds (at shutdown)."""
        with self._lock:
            for grant in list(self._current.values()):
                self._retire(grant)
            self._closed = True
            self._room.notify_all()
        self._wake.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join()
            self._flusher = None
        self.flush()
