"""Per-token concurrency slots and requests-per-minute, atomic in Redis.

One Lua script does both checks and takes the slot in one round trip. Slots are
members of a sorted set scored by their lease's end: a process renews the leases
of its requests in flight, so the slots of a process that died free themselves
when their lease ends. The RPM limit is a true sliding window: the set of
accepted requests' times over the last 60 s.

Without REDIS_URL (the embedded default) the same rules hold in process memory.
"""

import asyncio
import time
from dataclasses import dataclass, field
from enum import Enum

import redis.asyncio as aioredis
from django.conf import settings
from redis.commands.core import AsyncScript

from .ids import unique_id

WINDOW_MS = 60_000

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

ACQUIRE_SCRIPT = (
    NOW.replace("NOW_ARG", "5")
    + """
local lease_ms = tonumber(ARGV[1])
local slot_limit = tonumber(ARGV[2])
local rpm_limit = tonumber(ARGV[3])
local member = ARGV[4]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= slot_limit then
  return 1
end
if rpm_limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000)
  if redis.call('ZCARD', KEYS[2]) >= rpm_limit then
    return 2
  end
  redis.call('ZADD', KEYS[2], now, member)
  redis.call('PEXPIRE', KEYS[2], 60000)
end
redis.call('ZADD', KEYS[1], now + lease_ms, member)
redis.call('PEXPIRE', KEYS[1], lease_ms * 2)
return 0
"""
)

RENEW_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local lease_ms = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + lease_ms, ARGV[i + 1])
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


class LimitOutcome(Enum):
    ACQUIRED = 0
    CONCURRENCY_EXCEEDED = 1
    RPM_EXCEEDED = 2


@dataclass(frozen=True, slots=True)
class Slot:
    token_id: int
    member: str


def _prefix() -> str:
    return str(settings.CACHES["default"].get("KEY_PREFIX", "comet"))


def slots_key(token_id: int) -> str:
    return f"{_prefix()}:relay:slots:{token_id}"


def rpm_key(token_id: int) -> str:
    return f"{_prefix()}:relay:rpm:{token_id}"


@dataclass(frozen=True, slots=True)
class _Connection:
    client: aioredis.Redis
    acquire: AsyncScript
    renew: AsyncScript
    count: AsyncScript


@dataclass
class _LocalState:
    slots: dict[int, dict[str, float]] = field(default_factory=dict)
    accepted: dict[int, list[float]] = field(default_factory=dict)


class Limiter:
    """Take and give back a token's slots; renew this process's leases while in flight."""

    def __init__(self, redis_url: str, lease_seconds: int) -> None:
        self.redis_url = redis_url
        self.lease_ms = lease_seconds * 1000
        self._connections: dict[asyncio.AbstractEventLoop, _Connection] = {}
        self._in_flight: dict[str, int] = {}
        self._renewers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self._local = _LocalState()

    def connection(self) -> "_Connection":
        """Return this event loop's Redis client and scripts (clients cannot cross loops)."""
        loop = asyncio.get_running_loop()
        found = self._connections.get(loop)
        if found is None:
            client = aioredis.Redis.from_url(self.redis_url, max_connections=512)
            found = _Connection(
                client=client,
                acquire=client.register_script(ACQUIRE_SCRIPT),
                renew=client.register_script(RENEW_SCRIPT),
                count=client.register_script(COUNT_SCRIPT),
            )
            self._connections[loop] = found
        return found

    async def acquire(
        self,
        *,
        token_id: int,
        concurrency_limit: int,
        rpm_limit: int | None,
        now_ms: int | None = None,
    ) -> tuple[LimitOutcome, Slot | None]:
        """Take a concurrency slot (and count the request in the RPM window) if both allow.

        `now_ms` is the time in milliseconds; without it Redis's clock (or, without
        Redis, this process's monotonic clock) is read.
        """
        member = unique_id()
        if not self.redis_url:
            now = time.monotonic() * 1000 if now_ms is None else now_ms
            outcome = self._acquire_locally(token_id, member, concurrency_limit, rpm_limit, now)
        else:
            keys = [slots_key(token_id), rpm_key(token_id)]
            args: list[int | str] = [self.lease_ms, concurrency_limit, rpm_limit or 0, member]
            if now_ms is not None:
                args.append(now_ms)
            outcome = LimitOutcome(int(await self.connection().acquire(keys=keys, args=args)))
        if outcome is not LimitOutcome.ACQUIRED:
            return outcome, None
        self._in_flight[member] = token_id
        if self.redis_url:
            self._ensure_renewer()
        return outcome, Slot(token_id=token_id, member=member)

    async def release(self, slot: Slot) -> None:
        """Give a slot back (safe to call twice)."""
        if self._in_flight.pop(slot.member, None) is None:
            return
        if not self.redis_url:
            self._local.slots.get(slot.token_id, {}).pop(slot.member, None)
            return
        await self.connection().client.zrem(slots_key(slot.token_id), slot.member)

    async def slots_in_use(self, token_id: int, now_ms: int | None = None) -> int:
        """Return how many of a token's slots are held (leases not yet ended at `now_ms`)."""
        if not self.redis_url:
            now = time.monotonic() * 1000 if now_ms is None else now_ms
            return sum(1 for end in self._local.slots.get(token_id, {}).values() if end > now)
        args = [] if now_ms is None else [now_ms]
        return int(await self.connection().count(keys=[slots_key(token_id)], args=args))

    def _acquire_locally(
        self,
        token_id: int,
        member: str,
        concurrency_limit: int,
        rpm_limit: int | None,
        now: float,
    ) -> LimitOutcome:
        slots = self._local.slots.setdefault(token_id, {})
        for expired in [key for key, end in slots.items() if end <= now]:
            del slots[expired]
        if len(slots) >= concurrency_limit:
            return LimitOutcome.CONCURRENCY_EXCEEDED
        if rpm_limit:
            accepted = [at for at in self._local.accepted.get(token_id, []) if at > now - WINDOW_MS]
            if len(accepted) >= rpm_limit:
                self._local.accepted[token_id] = accepted
                return LimitOutcome.RPM_EXCEEDED
            accepted.append(now)
            self._local.accepted[token_id] = accepted
        # In one process nothing can crash without its memory: no lease to renew.
        slots[member] = float("inf")
        return LimitOutcome.ACQUIRED

    def _ensure_renewer(self) -> None:
        loop = asyncio.get_running_loop()
        task = self._renewers.get(loop)
        if task is None or task.done():
            self._renewers[loop] = loop.create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        interval = self.lease_ms / 3000
        while self._in_flight:
            await asyncio.sleep(interval)
            members = list(self._in_flight.items())
            if not members:
                break
            try:
                await self.connection().renew(
                    keys=[slots_key(token_id) for _member, token_id in members],
                    args=[self.lease_ms, *(member for member, _token_id in members)],
                )
            except aioredis.RedisError:
                # The next round tries again; a lease is three intervals long.
                continue

    async def aclose(self) -> None:
        """Close this loop's Redis client (at server shutdown)."""
        loop = asyncio.get_running_loop()
        task = self._renewers.pop(loop, None)
        if task is not None:
            task.cancel()
        found = self._connections.pop(loop, None)
        if found is not None:
            await found.client.aclose()


_limiter: Limiter | None = None


def limiter() -> Limiter:
    """Return the process's limiter, built from settings on first use."""
    global _limiter
    if _limiter is None:
        _limiter = Limiter(settings.REDIS_URL, settings.RELAY_SLOT_LEASE_SECONDS)
    return _limiter
