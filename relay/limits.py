"""Per-token and per-account limits, atomic in Redis: one round trip to admit a request.

A request is admitted when all of these allow it, checked and counted by one Lua
script (`ACQUIRE_SCRIPT`), so nothing is counted for a refused request:

- **concurrency**: the token's slots and the account's slots in flight. Slots are
  members of a sorted set scored by their lease's end: a process renews the leases
  of its requests in flight, so the slots of a process that died free themselves
  when their lease ends;
- **RPM**: the requests the token and the account started in the last 60 s, an
  exact sliding window (the set of accepted requests' times; one accepted at `t`
  counts until `t + 60 s`, exclusive);
- **TPM**: the tokens the account used in the last 60 s, counted in 600 buckets of
  100 ms (a hash: bucket → tokens, with the running total). A request is admitted
  on its estimate (`relay.calls.hold_tokens`: the prompt as counted plus the
  completion it allows), which is counted in its bucket at once; when it settles,
  the bucket is corrected to the tokens it really used (`release`), so the window
  holds actual usage once requests finish. Tokens counted at `t` leave the window
  between `t + 59.9 s` and `t + 60 s` (the end of their bucket's minute). Eviction
  walks the buckets that left since the last admission, each once.

The token's limits apply to the token's own counts and the account's (its own or its
line's, `models_catalog.selectors.account_limits`) to the counts of all its tokens;
so a token gets min(token, account). The answer carries what OpenAI clients read
(`RateState`: limits, what remains, when the windows reset, when to retry).

Without REDIS_URL (the embedded default) the same rules hold in process memory.

When Redis does not answer — stalled, paused, unreachable, or every connection of this
process's pool busy for longer than `REDIS_WAIT_SECONDS` — an admission raises
`LimiterUnavailable` (the relay answers 503 with Retry-After: limits are never skipped)
and a release gives up on the window's correction, retrying only to free its slots
(whose leases end anyway, no longer renewed). See relay/README.md, "When Redis does not
answer".
"""

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from enum import Enum

import redis.asyncio as aioredis
from django.conf import settings
from redis.commands.core import AsyncScript

from .ids import unique_id

logger = logging.getLogger("relay")

WINDOW_MS = 60_000
# The TPM window's resolution: tokens leave it at most this much before 60 s have passed.
TPM_BUCKET_MS = 100
TPM_BUCKETS = WINDOW_MS // TPM_BUCKET_MS
# A refusal that only time can lift but no window says when (concurrency: another
# request must finish first): the Retry-After given.
CONCURRENCY_RETRY_MS = 1000
# The longest the limiter waits for Redis: for a free connection of the process's pool,
# to connect, or for one answer (normally well under a millisecond). Past it an
# admission is refused with 503 rather than wait for a stalled Redis.
REDIS_WAIT_SECONDS = 2.0
# Connections to Redis one relay process (one event loop) may open; more requests at
# once wait for one (up to REDIS_WAIT_SECONDS) instead of failing.
REDIS_MAX_CONNECTIONS = 512
# A release Redis did not answer: tries to free its slots again after these waits.
FREE_RETRY_SECONDS = (1.0, 2.0, 4.0, 8.0)

# The time in milliseconds: the caller's, passed after the other arguments, or else
# Redis's own clock, one for every relay process.
NOW = """
local now
if ARGV[NOW_ARG] then
  now = tonumber(ARGV[NOW_ARG])
else
  local now_parts = redis.call('TIME')
  now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
end
"""

# The TPM window of KEYS[tpm]: fields 'p' (the oldest bucket still counted), 't' (the
# tokens of the buckets from 'p' on), 'l' (the newest bucket counted) and one field
# per bucket. `tpm_evict` drops the buckets that left the window and returns the
# tokens still in it and the first bucket of the window.
TPM_FUNCTIONS = f"""
local BUCKET_MS = {TPM_BUCKET_MS}
local BUCKETS = {TPM_BUCKETS}
local function tpm_evict(key, now)
  local current = math.floor(now / BUCKET_MS)
  local first = current - BUCKETS + 1
  local pointer = tonumber(redis.call('HGET', key, 'p'))
  if pointer == nil then
    return 0, first, current
  end
  if pointer < first then
    if first - pointer >= BUCKETS then
      redis.call('DEL', key)
      return 0, first, current
    end
    local stale = {{}}
    for bucket = pointer, first - 1 do
      stale[#stale + 1] = bucket
    end
    local freed = 0
    for _, value in ipairs(redis.call('HMGET', key, unpack(stale))) do
      if value then
        freed = freed + tonumber(value)
      end
    end
    redis.call('HDEL', key, unpack(stale))
    redis.call('HSET', key, 'p', first)
    if freed ~= 0 then
      return redis.call('HINCRBY', key, 't', -freed), first, current
    end
  end
  return tonumber(redis.call('HGET', key, 't') or '0'), first, current
end
local function tpm_add(key, first, current, tokens)
  redis.call('HSETNX', key, 'p', first)
  redis.call('HINCRBY', key, current, tokens)
  redis.call('HINCRBY', key, 't', tokens)
  redis.call('HSET', key, 'l', current)
  redis.call('PEXPIRE', key, {WINDOW_MS + TPM_BUCKET_MS})
end
local function tpm_reset_ms(key, now)
  local last = tonumber(redis.call('HGET', key, 'l'))
  if last == nil then
    return 0
  end
  return math.max(0, (last + BUCKETS) * BUCKET_MS - now)
end
"""

ACQUIRE_SCRIPT = (
    NOW.replace("NOW_ARG", "9")
    + TPM_FUNCTIONS
    + f"""
-- KEYS: token slots, token RPM, account slots, account RPM, account TPM
local lease_ms = tonumber(ARGV[1])
local token_slots = tonumber(ARGV[2])
local token_rpm = tonumber(ARGV[3])
local account_slots = tonumber(ARGV[4])
local account_rpm = tonumber(ARGV[5])
local account_tpm = tonumber(ARGV[6])
local tokens = tonumber(ARGV[7])
local member = ARGV[8]
local outcome = 0
local retry_ms = 0

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= token_slots then
  outcome = 1
elseif redis.call('ZCARD', KEYS[3]) >= account_slots then
  outcome = 3
end
if outcome ~= 0 then
  retry_ms = {CONCURRENCY_RETRY_MS}
end

-- The binding RPM window: the one with the fewest requests left.
local rpm_limit, rpm_remaining, rpm_reset = 0, 0, 0
for index, spec in ipairs({{{{2, token_rpm, 2}}, {{4, account_rpm, 4}}}}) do
  local key, limit, refusal = KEYS[spec[1]], spec[2], spec[3]
  if limit > 0 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - {WINDOW_MS})
    local used = redis.call('ZCARD', key)
    if outcome == 0 and used >= limit then
      outcome = refusal
      -- Admitted again once the request `limit` places before the newest has left.
      local oldest = redis.call('ZRANGE', key, used - limit, used - limit, 'WITHSCORES')
      retry_ms = tonumber(oldest[2]) + {WINDOW_MS} - now
    end
    local reset = 0
    if used > 0 then
      local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
      reset = tonumber(newest[2]) + {WINDOW_MS} - now
    end
    if rpm_limit == 0 or limit - used < rpm_remaining then
      rpm_limit, rpm_remaining, rpm_reset = limit, limit - used, reset
    end
  end
end

local tpm_used, first, current = 0, 0, 0
local bucket = -1
if account_tpm > 0 then
  tpm_used, first, current = tpm_evict(KEYS[5], now)
  if outcome == 0 and tokens > account_tpm then
    outcome = 6
    retry_ms = 0
  elseif outcome == 0 and tpm_used + tokens > account_tpm then
    outcome = 5
    -- Admitted again once enough of the oldest buckets have left the window.
    local fields = {{}}
    for b = first, current do
      fields[#fields + 1] = b
    end
    local excess = tpm_used + tokens - account_tpm
    for i, value in ipairs(redis.call('HMGET', KEYS[5], unpack(fields))) do
      if value then
        excess = excess - tonumber(value)
        if excess <= 0 then
          retry_ms = (fields[i] + BUCKETS) * BUCKET_MS - now
          break
        end
      end
    end
    if excess > 0 then
      retry_ms = {WINDOW_MS}
    end
  end
end

if outcome == 0 then
  redis.call('ZADD', KEYS[1], now + lease_ms, member)
  redis.call('PEXPIRE', KEYS[1], lease_ms * 2)
  redis.call('ZADD', KEYS[3], now + lease_ms, member)
  redis.call('PEXPIRE', KEYS[3], lease_ms * 2)
  for _, spec in ipairs({{{{2, token_rpm}}, {{4, account_rpm}}}}) do
    if spec[2] > 0 then
      redis.call('ZADD', KEYS[spec[1]], now, member)
      redis.call('PEXPIRE', KEYS[spec[1]], {WINDOW_MS})
    end
  end
  if rpm_limit > 0 then
    rpm_remaining = rpm_remaining - 1
    rpm_reset = {WINDOW_MS}
  end
  if account_tpm > 0 then
    tpm_add(KEYS[5], first, current, tokens)
    tpm_used = tpm_used + tokens
    bucket = current
  end
end
local tpm_reset = 0
if account_tpm > 0 then
  tpm_reset = tpm_reset_ms(KEYS[5], now)
end
return {{outcome, bucket, rpm_limit, rpm_remaining, rpm_reset,
        account_tpm, account_tpm - tpm_used, tpm_reset, retry_ms}}
"""
)

RELEASE_SCRIPT = (
    NOW.replace("NOW_ARG", "4")
    + TPM_FUNCTIONS
    + """
-- KEYS: token slots, account slots, account TPM
-- ARGV: member, the bucket its estimate was counted in (-1: none), actual - estimate
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local bucket = tonumber(ARGV[2])
local correction = tonumber(ARGV[3])
if bucket >= 0 and correction ~= 0 then
  local _used, first, current = tpm_evict(KEYS[3], now)
  if bucket >= first and redis.call('HEXISTS', KEYS[3], bucket) == 1 then
    redis.call('HINCRBY', KEYS[3], bucket, correction)
    redis.call('HINCRBY', KEYS[3], 't', correction)
  elseif correction > 0 then
    -- The estimate has left the window already (a call longer than a minute): what
    -- it used beyond the estimate counts now.
    tpm_add(KEYS[3], first, current, correction)
  end
end
return 0
"""
)

RENEW_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local lease_ms = tonumber(ARGV[1])
-- Two keys per member: its token's slots and its account's.
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + lease_ms, ARGV[math.floor((i + 1) / 2) + 1])
  redis.call('PEXPIRE', key, lease_ms * 2)
end
return 0
"""

COUNT_SCRIPT = (
    NOW.replace("NOW_ARG", "1")
    + """
return redis.call('ZCOUNT', KEYS[1], now, '+inf')
"""
)


class LimiterUnavailable(Exception):
    """Redis did not answer an admission in time: nothing is known about the limits."""


# What a Redis that stalls, refuses or runs out of connections raises.
REDIS_FAILURES = (aioredis.RedisError, OSError, asyncio.TimeoutError)


class LimitOutcome(Enum):
    ACQUIRED = 0
    CONCURRENCY_EXCEEDED = 1
    RPM_EXCEEDED = 2
    ACCOUNT_CONCURRENCY_EXCEEDED = 3
    ACCOUNT_RPM_EXCEEDED = 4
    TPM_EXCEEDED = 5
    # The request alone asks for more tokens than the account may use in a minute.
    TPM_REQUEST_TOO_LARGE = 6


@dataclass(frozen=True, slots=True)
class Limits:
    """What one admission checks: the token's limits and its account's (None: no limit)."""

    token_concurrency: int
    token_rpm: int | None = None
    account_concurrency: int | None = None
    account_rpm: int | None = None
    account_tpm: int | None = None


@dataclass(frozen=True, slots=True)
class RateState:
    """The windows as an admission left them, for the `x-ratelimit-*` headers.

    `rpm_*` describe the binding RPM window (the token's or the account's, whichever
    has fewer requests left), `tpm_*` the account's TPM window; a limit of 0 means
    none is set. Resets are the milliseconds until the window is empty again;
    `retry_ms` is when a refused request may be admitted.
    """

    rpm_limit: int = 0
    rpm_remaining: int = 0
    rpm_reset_ms: int = 0
    tpm_limit: int = 0
    tpm_remaining: int = 0
    tpm_reset_ms: int = 0
    retry_ms: int = 0


@dataclass(frozen=True, slots=True)
class Slot:
    token_id: int
    user_id: int
    member: str
    # The TPM bucket the estimate was counted in (None: no TPM limit), and the estimate.
    tpm_bucket: int | None = None
    tpm_estimate: int = 0


@dataclass(frozen=True, slots=True)
class Admission:
    outcome: LimitOutcome
    slot: Slot | None
    state: RateState


def _prefix() -> str:
    return str(settings.CACHES["default"].get("KEY_PREFIX", "comet"))


def slots_key(token_id: int) -> str:
    return f"{_prefix()}:relay:slots:{token_id}"


def rpm_key(token_id: int) -> str:
    return f"{_prefix()}:relay:rpm:{token_id}"


def account_slots_key(user_id: int) -> str:
    return f"{_prefix()}:relay:account-slots:{user_id}"


def account_rpm_key(user_id: int) -> str:
    return f"{_prefix()}:relay:account-rpm:{user_id}"


def tpm_key(user_id: int) -> str:
    return f"{_prefix()}:relay:tpm:{user_id}"


@dataclass(frozen=True, slots=True)
class _Connection:
    client: aioredis.Redis
    acquire: AsyncScript
    release: AsyncScript
    renew: AsyncScript
    count: AsyncScript


class _TokenWindow:
    """The TPM window in process memory: the same buckets as the Redis script's."""

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.total = 0
        self.last: int | None = None

    def evict(self, now: float) -> tuple[int, int]:
        current = math.floor(now / TPM_BUCKET_MS)
        first = current - TPM_BUCKETS + 1
        for bucket in [bucket for bucket in self.buckets if bucket < first]:
            self.total -= self.buckets.pop(bucket)
        return first, current

    def reset_ms(self, now: float) -> int:
        if self.last is None:
            return 0
        return max(0, int((self.last + TPM_BUCKETS) * TPM_BUCKET_MS - now))

    def add(self, bucket: int, tokens: int) -> None:
        self.buckets[bucket] = self.buckets.get(bucket, 0) + tokens
        self.total += tokens
        self.last = bucket if self.last is None else max(self.last, bucket)


@dataclass
class _LocalState:
    slots: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)
    accepted: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    tpm: dict[int, _TokenWindow] = field(default_factory=dict)


class Limiter:
    """Admit requests and give their slots back; renew this process's leases in flight."""

    def __init__(
        self,
        redis_url: str,
        lease_seconds: int,
        *,
        wait_seconds: float = REDIS_WAIT_SECONDS,
        max_connections: int = REDIS_MAX_CONNECTIONS,
    ) -> None:
        self.redis_url = redis_url
        self.lease_ms = lease_seconds * 1000
        self.wait_seconds = wait_seconds
        self.max_connections = max_connections
        self._connections: dict[asyncio.AbstractEventLoop, _Connection] = {}
        self._in_flight: dict[str, Slot] = {}
        self._renewers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self._freeing: set[asyncio.Task[None]] = set()
        self._local = _LocalState()

    def connection(self) -> "_Connection":
        """Return this event loop's Redis client and scripts (clients cannot cross loops)."""
        loop = asyncio.get_running_loop()
        found = self._connections.get(loop)
        if found is None:
            # A blocking pool: a burst past its size waits for a connection (up to
            # wait_seconds) rather than failing at once with "Too many connections".
            pool = aioredis.BlockingConnectionPool.from_url(
                self.redis_url,
                max_connections=self.max_connections,
                timeout=self.wait_seconds,
                socket_timeout=self.wait_seconds,
                socket_connect_timeout=self.wait_seconds,
            )
            client = aioredis.Redis.from_pool(pool)  # closes the pool when it closes
            found = _Connection(
                client=client,
                acquire=client.register_script(ACQUIRE_SCRIPT),
                release=client.register_script(RELEASE_SCRIPT),
                renew=client.register_script(RENEW_SCRIPT),
                count=client.register_script(COUNT_SCRIPT),
            )
            self._connections[loop] = found
        return found

    async def acquire(
        self,
        *,
        token_id: int,
        user_id: int,
        limits: Limits,
        tokens: int = 0,
        now_ms: int | None = None,
    ) -> Admission:
        """Admit a request if every limit allows it: take its slots, count it in the RPM
        windows and its estimated `tokens` in the TPM window, in one step.

        `now_ms` is the time in milliseconds; without it Redis's clock (or, without
        Redis, this process's monotonic clock) is read. Raise `LimiterUnavailable` when
        Redis does not answer within `wait_seconds`.
        """
        member = unique_id()
        account_concurrency = limits.account_concurrency or limits.token_concurrency
        tokens = max(0, int(tokens))
        if not self.redis_url:
            now = time.monotonic() * 1000 if now_ms is None else now_ms
            reply = self._acquire_locally(
                token_id, user_id, member, limits, account_concurrency, tokens, now
            )
        else:
            keys = [
                slots_key(token_id),
                rpm_key(token_id),
                account_slots_key(user_id),
                account_rpm_key(user_id),
                tpm_key(user_id),
            ]
            args: list[int | str] = [
                self.lease_ms,
                limits.token_concurrency,
                limits.token_rpm or 0,
                account_concurrency,
                limits.account_rpm or 0,
                limits.account_tpm or 0,
                tokens,
                member,
            ]
            if now_ms is not None:
                args.append(now_ms)
            try:
                answer = await self.connection().acquire(keys=keys, args=args)
            except REDIS_FAILURES as error:
                raise LimiterUnavailable(type(error).__name__) from error
            reply = [int(value) for value in answer]
        outcome = LimitOutcome(reply[0])
        state = RateState(*reply[2:9])
        if outcome is not LimitOutcome.ACQUIRED:
            return Admission(outcome, None, state)
        slot = Slot(
            token_id=token_id,
            user_id=user_id,
            member=member,
            tpm_bucket=reply[1] if reply[1] >= 0 else None,
            tpm_estimate=tokens,
        )
        self._in_flight[member] = slot
        if self.redis_url:
            self._ensure_renewer()
        return Admission(outcome, slot, state)

    async def release(
        self, slot: Slot, *, tokens_used: int | None = None, now_ms: int | None = None
    ) -> None:
        """Give a slot back and correct its TPM estimate to `tokens_used` (None: keep the
        estimate). Safe to call twice: only the first call counts.

        Never raises for Redis: when Redis does not answer, the correction is given up
        (the estimate stays counted) and freeing the slots is tried again in the
        background (`FREE_RETRY_SECONDS`); their leases end anyway, no longer renewed.
        """
        if self._in_flight.pop(slot.member, None) is None:
            return
        correction = 0 if tokens_used is None else max(0, tokens_used) - slot.tpm_estimate
        bucket = -1 if slot.tpm_bucket is None else slot.tpm_bucket
        if not self.redis_url:
            now = time.monotonic() * 1000 if now_ms is None else now_ms
            self._release_locally(slot, bucket, correction, now)
            return
        args: list[int | str] = [slot.member, bucket, correction]
        if now_ms is not None:
            args.append(now_ms)
        try:
            await self.connection().release(
                keys=[
                    slots_key(slot.token_id),
                    account_slots_key(slot.user_id),
                    tpm_key(slot.user_id),
                ],
                args=args,
            )
        except REDIS_FAILURES as error:
            # The correction is not retried: Redis may have applied it before the answer
            # was lost, and a second one would count twice. Removing slots is idempotent.
            logger.warning(
                "Redis did not answer a release (%s): its slots are freed in the background",
                type(error).__name__,
            )
            task = asyncio.get_running_loop().create_task(self._free_later(slot))
            self._freeing.add(task)
            task.add_done_callback(self._freeing.discard)

    async def _free_later(self, slot: Slot) -> None:
        """Free the slots of a release Redis did not answer, retrying a few times."""
        for wait in FREE_RETRY_SECONDS:
            await asyncio.sleep(wait)
            try:
                client = self.connection().client
                async with client.pipeline(transaction=False) as pipe:
                    pipe.zrem(slots_key(slot.token_id), slot.member)
                    pipe.zrem(account_slots_key(slot.user_id), slot.member)
                    await pipe.execute()
                return
            except REDIS_FAILURES:
                continue
        logger.warning("Could not free a request's slots: they free when their lease ends")

    async def slots_in_use(self, token_id: int, now_ms: int | None = None) -> int:
        """Return how many of a token's slots are held (leases not yet ended at `now_ms`)."""
        if not self.redis_url:
            now = time.monotonic() * 1000 if now_ms is None else now_ms
            held = self._local.slots.get(("token", token_id), {})
            return sum(1 for end in held.values() if end > now)
        args = [] if now_ms is None else [now_ms]
        return int(await self.connection().count(keys=[slots_key(token_id)], args=args))

    def _acquire_locally(
        self,
        token_id: int,
        user_id: int,
        member: str,
        limits: Limits,
        account_concurrency: int,
        tokens: int,
        now: float,
    ) -> list[int]:
        local = self._local
        outcome, retry_ms = 0, 0
        for kind, owner, limit, refusal in (
            ("token", token_id, limits.token_concurrency, 1),
            ("account", user_id, account_concurrency, 3),
        ):
            held = local.slots.setdefault((kind, owner), {})
            for expired in [key for key, end in held.items() if end <= now]:
                del held[expired]
            if outcome == 0 and len(held) >= limit:
                outcome, retry_ms = refusal, CONCURRENCY_RETRY_MS
        rpm_limit, rpm_remaining, rpm_reset = 0, 0, 0
        for kind, owner, rpm, refusal in (
            ("token", token_id, limits.token_rpm, 2),
            ("account", user_id, limits.account_rpm, 4),
        ):
            if not rpm:
                continue
            accepted = [at for at in local.accepted.get((kind, owner), []) if at > now - WINDOW_MS]
            local.accepted[(kind, owner)] = accepted
            used = len(accepted)
            if outcome == 0 and used >= rpm:
                outcome = refusal
                retry_ms = int(accepted[used - rpm] + WINDOW_MS - now)
            reset = int(accepted[-1] + WINDOW_MS - now) if accepted else 0
            if rpm_limit == 0 or rpm - used < rpm_remaining:
                rpm_limit, rpm_remaining, rpm_reset = rpm, rpm - used, reset
        tpm_used, bucket = 0, -1
        window = local.tpm.setdefault(user_id, _TokenWindow())
        _first, current = window.evict(now)
        tpm = limits.account_tpm or 0
        if tpm:
            tpm_used = window.total
            if outcome == 0 and tokens > tpm:
                outcome, retry_ms = 6, 0
            elif outcome == 0 and tpm_used + tokens > tpm:
                outcome, retry_ms = 5, WINDOW_MS
                excess = tpm_used + tokens - tpm
                for old in sorted(window.buckets):
                    excess -= window.buckets[old]
                    if excess <= 0:
                        retry_ms = int((old + TPM_BUCKETS) * TPM_BUCKET_MS - now)
                        break
        if outcome == 0:
            # In one process nothing can crash without its memory: no lease to renew.
            local.slots[("token", token_id)][member] = float("inf")
            local.slots[("account", user_id)][member] = float("inf")
            for kind, owner, rpm in (
                ("token", token_id, limits.token_rpm),
                ("account", user_id, limits.account_rpm),
            ):
                if rpm:
                    local.accepted[(kind, owner)].append(now)
            if rpm_limit:
                rpm_remaining, rpm_reset = rpm_remaining - 1, WINDOW_MS
            if tpm:
                window.add(current, tokens)
                tpm_used += tokens
                bucket = current
        tpm_reset = window.reset_ms(now) if tpm else 0
        return [
            outcome,
            bucket,
            rpm_limit,
            rpm_remaining,
            rpm_reset,
            tpm,
            tpm - tpm_used,
            tpm_reset,
            retry_ms,
        ]

    def _release_locally(self, slot: Slot, bucket: int, correction: int, now: float) -> None:
        self._local.slots.get(("token", slot.token_id), {}).pop(slot.member, None)
        self._local.slots.get(("account", slot.user_id), {}).pop(slot.member, None)
        if bucket < 0 or correction == 0:
            return
        window = self._local.tpm.setdefault(slot.user_id, _TokenWindow())
        first, current = window.evict(now)
        if bucket >= first and bucket in window.buckets:
            window.buckets[bucket] += correction
            window.total += correction
        elif correction > 0:
            window.add(current, correction)

    def _ensure_renewer(self) -> None:
        loop = asyncio.get_running_loop()
        task = self._renewers.get(loop)
        if task is None or task.done():
            self._renewers[loop] = loop.create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        interval = self.lease_ms / 3000
        while self._in_flight:
            await asyncio.sleep(interval)
            slots = list(self._in_flight.values())
            if not slots:
                break
            keys = []
            for slot in slots:
                keys += [slots_key(slot.token_id), account_slots_key(slot.user_id)]
            try:
                await self.connection().renew(
                    keys=keys, args=[self.lease_ms, *(slot.member for slot in slots)]
                )
            except REDIS_FAILURES:
                # The next round tries again; a lease is three intervals long.
                continue

    async def aclose(self) -> None:
        """Close this loop's Redis client (at server shutdown)."""
        loop = asyncio.get_running_loop()
        task = self._renewers.pop(loop, None)
        if task is not None:
            task.cancel()
        for freeing in [task for task in self._freeing if task.get_loop() is loop]:
            freeing.cancel()
        found = self._connections.pop(loop, None)
        if found is not None:
            await found.client.aclose()


def reset_text(milliseconds: int) -> str:
    """Return a duration as OpenAI's `x-ratelimit-reset-*` headers write it: "20ms",
    "1.5s", "6m0s"."""
    milliseconds = max(0, int(milliseconds))
    if milliseconds < 1000:
        return f"{milliseconds}ms"
    minutes, rest = divmod(milliseconds, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def rate_headers(state: RateState, *, refused: bool = False) -> list[tuple[bytes, bytes]]:
    """Return the `x-ratelimit-*` headers of `state` (only for the limits that are set),
    with `retry-after` and `retry-after-ms` when the request was refused."""
    headers: list[tuple[bytes, bytes]] = []
    for kind, limit, remaining, reset in (
        ("requests", state.rpm_limit, state.rpm_remaining, state.rpm_reset_ms),
        ("tokens", state.tpm_limit, state.tpm_remaining, state.tpm_reset_ms),
    ):
        if limit > 0:
            headers += [
                (f"x-ratelimit-limit-{kind}".encode(), str(limit).encode()),
                (f"x-ratelimit-remaining-{kind}".encode(), str(max(0, remaining)).encode()),
                (f"x-ratelimit-reset-{kind}".encode(), reset_text(reset).encode()),
            ]
    if refused:
        retry_ms = max(1, state.retry_ms)
        headers += [
            (b"retry-after", str(math.ceil(retry_ms / 1000)).encode()),
            (b"retry-after-ms", str(retry_ms).encode()),
        ]
    return headers


_limiter: Limiter | None = None


def limiter() -> Limiter:
    """Return the process's limiter, built from settings on first use."""
    global _limiter
    if _limiter is None:
        _limiter = Limiter(settings.REDIS_URL, settings.RELAY_SLOT_LEASE_SECONDS)
    return _limiter
