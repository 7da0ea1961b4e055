"""A few hundred milliseconds of process memory in front of the shared caches.

Token and price lookups are cached in Redis by their owners; every Redis read from
the event loop is a hop to a worker thread and back, which costs more than the rest
of the relay's own work. Holding the answer in memory for `RELAY_LOCAL_CACHE_SECONDS`
(0.5 s by default) keeps a revoked token usable for at most that much longer: the
promise is "within 1 second".
"""

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_ENTRIES = 10_000


class LocalMemo(Generic[T]):
    """Remember the results of an async lookup for `seconds`, misses included."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: dict[Hashable, tuple[float, T]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """Return the remembered result for `key`, or load and remember it."""
        if self.seconds <= 0:
            return await load()
        now = time.monotonic()
        found = self._entries.get(key)
        if found is not None and found[0] > now:
            return found[1]
        value = await load()
        if len(self._entries) >= MAX_ENTRIES:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
        self._entries[key] = (now + self.seconds, value)
        return value

    def clear(self) -> None:
        self._entries.clear()
