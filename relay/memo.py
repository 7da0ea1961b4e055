"""A few hundred milliseconds of process memory in front of the shared caches.

Token and price lookups are cached in Redis by their owners; every Redis read from
the event loop is a hop to a worker thread and back, which costs more than the rest
of the relay's own work. Holding the answer in memory for `LOCAL_CACHE_SECONDS`
(0.5 s) keeps a revoked token usable for at most that much longer: the
promise is "within 1 second".

The time is read from `clock` (`time.monotonic` unless given), so a test can move
it instead of waiting.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_ENTRIES = 10_000
# How long the relay keeps tokens and prices in a process's memory. A disabled,
# deleted or rolled token is refused by every server within 1 second (the promise the
# token pages make): the shared cache sees the change as it commits (accounts.tokens),
# and this memory adds at most half a second. Not a setting, so that no deployment
# can stretch the promise.
LOCAL_CACHE_SECONDS = 0.5


class LocalMemo(Generic[T]):
    """Remember the results of an async lookup for `seconds`, misses included."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._entries: dict[Hashable, tuple[float, T]] = {}
        self._loading: dict[Hashable, asyncio.Future[T]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """Return the remembered result for `key`, or load and remember it.

        Requests that miss together share one load: without that, every request
        arriving while a slow lookup runs would start its own.
        """
        if self.seconds <= 0:
            return await load()
        found = self._entries.get(key)
        if found is not None and found[0] > self.clock():
            return found[1]
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(key, load))
            self._loading[key] = loading
            loading.add_done_callback(lambda _done: self._loading.pop(key, None))
        # Shielded: one waiting request going away must not cancel the others' load.
        return await asyncio.shield(loading)

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        value = await load()
        now = self.clock()
        if len(self._entries) >= MAX_ENTRIES:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
        self._entries[key] = (now + self.seconds, value)
        return value

    def clear(self) -> None:
        self._entries.clear()
