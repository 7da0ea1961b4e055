"""The credit meter: admit a relay process's requests in memory against its grants.

Writing the hot account row once per request caps one account at about as many
requests per second as `pgbench` reaches on one row, so each relay process holds
its customers' money in grants (`billing.grants`) and meters requests in memory:

- `CreditMeter.reserve` holds a request's upper-bound cost against the process's
  grant for that token: a few dictionary operations under a lock, no database.
  When the grant cannot cover it, ONE caller takes a new grant (big enough for
  about a second of this token's spending, at most `MAX_GRANT_MICRO_USD` and a
  quarter of what the account has free) and the others wait for it.
- `settle` frees the rest of the hold into the grant and queues the request;
  `release` gives the whole hold back.
- A writer thread writes what was settled every `FLUSH_SECONDS` through
  `billing.settlement.settle_many` (one statement per batch on PostgreSQL, the ORM
  on SQLite), on a connection of the process's pool given back after each round
  (`core.db`). The hot row is written once per batch, not per request.
- A grant takes new holds for at most `MAX_GRANT_AGE_SECONDS` (1 s). Then it is
  retired: at the next write its unused part goes back to the account, and it is
  closed once its last request was written. So every second each busy token's
  next grant checks again that the token is enabled and not expired and that the
  account is not frozen: such a change is seen within a second, as the token
  cache promises.

An answered request is charged its whole actual cost: what its hold and its
grant's unused part cannot cover comes off the balance directly, below zero if
need be; the account then owes that overrun and is refused until it is paid.

Limits, by design:
- Near the end of a balance, a request can be refused while another relay process
  still holds the last few requests' worth of it; that grant comes back within
  about `MAX_GRANT_AGE_SECONDS`. One process alone refuses exactly when the balance
  cannot cover the request: before refusing, it gives back what its other grants on
  the account hold unused and asks again.
- A process that dies loses the requests it settled but had not written yet (at
  most one flush interval, or `MAX_PENDING` requests): they are not charged. Its
  grants stay held until their lease (`LEASE_SECONDS`, renewed while the process
  lives) ends and `billing.grants.grant_release_expired` frees them.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils.translation import gettext_noop

from billing import metrics
from billing.grants import (
    UsageRefused,
    duplicate_refusal,
    grant_renew,
    grant_return,
    grant_take,
)
from billing.settlement import Settlement, settle_many
from core.db import connection_return
from logs.data import RequestLogData

logger = logging.getLogger(__name__)

# The most one grant takes at once ($10): bounds what a process holds of one
# account, and what a crashed process keeps held until its lease ends.
MAX_GRANT_MICRO_USD = 10_000_000
# A grant takes new holds for this long, then goes back: a disabled token, an
# expired one or a frozen account is refused within it (the one-second promise).
MAX_GRANT_AGE_SECONDS = 1.0
# A grant's lease: renewed while its process lives; freed by beat after a crash.
LEASE_SECONDS = 60
# How often the writer writes settled requests (and how long one may wait unwritten).
FLUSH_SECONDS = 0.02
# Settled requests allowed unwritten; past it, requests wait for the writer.
MAX_PENDING = 5_000
# Requests per statement: a batch bigger than this is written in several.
BATCH_SIZE = 200
# How long a "balance too low" answer is reused for requests at least as big (a
# top-up made meanwhile is seen after at most this long).
REFUSAL_MEMORY_SECONDS = 0.1
# A request waits at most this long for the writer to catch up (the database down or
# far behind), then is refused with "billing_unavailable" (the relay answers 503).
BACKLOG_WAIT_SECONDS = 5.0


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

    One per process (the relay's). `reserve` holds a request's most cost or raises
    UsageRefused and changes nothing; `settle` and `release` never touch the database: the
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_grant = max_grant or MAX_GRANT_MICRO_USD
        self.max_age = MAX_GRANT_AGE_SECONDS if max_age_seconds is None else max_age_seconds
        self.lease_seconds = lease_seconds or LEASE_SECONDS
        self.flush_seconds = FLUSH_SECONDS if flush_seconds is None else flush_seconds
        self.max_pending = max_pending or MAX_PENDING
        # Without the background writer nothing is written until `flush` is called.
        self.background = background
        # What grants' ages and remembered refusals are measured on (a test moves it).
        self._clock = clock
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
        self._pending: list[Settlement] = []
        # When the oldest request of `_pending` settled (`clock`): the writer's lag.
        self._pending_since: float | None = None
        self._flusher: threading.Thread | None = None
        self._closed = False
        self._renewed_at = clock()

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
                        gettext_noop("Usage cannot be recorded right now. Retry in a few seconds."),
                    )
                self._room.wait(timeout=left)
            if self._hold_from_grant(token_id, user_id, request_id, amount):
                return
            state = self._tokens.setdefault(token_id, _TokenState())
            if (
                state.refusal is not None
                and amount >= state.refused_amount
                and self._clock() < state.refused_until
            ):
                raise UsageRefused(state.refusal.code, state.refusal.template, state.refusal.params)
        with state.taking:
            try:
                self._take_and_hold(state, token_id, user_id, request_id, amount)
            except UsageRefused as refusal:
                if refusal.code == "insufficient_quota":
                    with self._lock:
                        state.refusal = refusal
                        state.refused_amount = amount
                        state.refused_until = self._clock() + self.refusal_memory_seconds
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
            if not self._pending:
                self._pending_since = self._clock()
            self._pending.append(
                Settlement(
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
            raise duplicate_refusal(request_id)
        grant = self._current.get(token_id)
        if grant is None or grant.user_id != user_id:
            return False
        if self._clock() - grant.taken_at >= self.max_age:
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
                metrics.grants_taken.inc()
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
                        taken_at=self._clock(),
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
                metrics.writer_failures.inc()
                logger.exception("Writing settled requests failed; retrying")
                time.sleep(self.flush_seconds or 0.01)
            finally:
                # Back to the pool after each round: the writer holds no connection
                # while it waits, and draws from the same bounded pool as requests.
                connection_return()

    def flush(self) -> None:
        """Write every settled request, then return the retired grants nothing holds."""
        with self._flushing:
            now = self._clock()
            with self._lock:
                batch = self._pending
                since = self._pending_since
                self._pending = []
                self._pending_since = None
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
                    chunk = batch[written : written + BATCH_SIZE]
                    self._write(chunk)
                    written += len(chunk)
            except BaseException:
                with self._lock:
                    # Not written (the database is unreachable, or anything else went
                    # wrong): back to the front of the queue, in order, for the next
                    # round. Settled requests are only ever dropped by a dying process.
                    self._pending[:0] = batch[written:]
                    if batch[written:]:
                        self._pending_since = since
                    self._room.notify_all()
                raise
            with self._lock:
                self._room.notify_all()
            if batch and since is not None:
                metrics.writer_lag_seconds.observe(self._clock() - since)
                metrics.writer_requests.inc(len(batch))
            for grant, available in unused:
                try:
                    grant_return(grant_id=grant.id, amount=available)
                except DatabaseError:
                    with self._lock:
                        grant.available += available
                    raise
                self._money_back(grant)
                metrics.grants_returned.inc()
            for grant in returnable:
                grant_return(grant_id=grant.id)
                with self._lock:
                    self._grants.pop(grant.id, None)
                self._money_back(grant)
                metrics.grants_returned.inc()
            if live and now - self._renewed_at >= self.lease_seconds / 3:
                grant_renew(grant_ids=live, lease_seconds=self.lease_seconds)
                self._renewed_at = now

    def _money_back(self, grant: _Grant) -> None:
        with self._lock:
            state = self._tokens.get(grant.token_id)
            if state is not None:
                state.refusal = None  # money came back: ask again

    def _write(self, chunk: list[Settlement]) -> None:
        try:
            settle_many(chunk, lease_seconds=self.lease_seconds)
        except (OperationalError, InterfaceError):
            raise
        except DatabaseError:
            # A row the database refuses must not hold up the others: one by one.
            logger.exception("Writing %d settled requests failed; one by one", len(chunk))
            for settlement in chunk:
                self._write_alone(settlement)

    def _write_alone(self, settlement: Settlement) -> None:
        """Write one request; if its row is refused, again without the refused detail.

        An answered request is never dropped: its cost reaches the books even when a
        detail of its log row (an address, a text) cannot be stored as given. One
        refused even then stays queued, and is retried at every flush.
        """
        for attempt in (settlement, replace(settlement, log=settlement.log.without_details())):
            try:
                settle_many([attempt], lease_seconds=self.lease_seconds)
            except (OperationalError, InterfaceError):
                raise
            except DatabaseError:
                logger.exception("Request %s could not be written", settlement.request_id)
            else:
                return
        with self._lock:
            if not self._pending:
                self._pending_since = self._clock()
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
