"""A channel's several upstream keys: used in turn, and set aside when the upstream refuses one.

State is kept in each relay process's memory, not in Redis: the turn is a counter per
channel (round robin per process, so N processes spread the load over the keys the
same way), and a key the upstream refused is set aside in the process that saw it.
Each process learns of a refused key by itself, at the cost of one refused attempt
(which is retried on the channel's next key at once, so the caller does not see it);
in exchange a request asks nothing of Redis for its keys.

A key is set aside

- after 401 or 403 (the upstream refuses the key), for `KEY_REFUSED_SECONDS`;
- after 429 with OpenAI's `insufficient_quota` (the key's account is out of credit),
  for the same;
- after another 429, for the `Retry-After` (or `retry-after-ms`) it gave, at most
  `KEY_REFUSED_SECONDS`, or `KEY_RATE_LIMITED_SECONDS` without one;

and comes back when that time is over, or as soon as the channel is saved (an admin's
edit, a new key, a status change): set-aside keys are remembered against the
channel's `updated_at` (`ChannelRoute.keys_version`), so a saved channel starts clean.
"""

import email.utils
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .selectors import ChannelRoute

logger = logging.getLogger("relay")

# A refused key (401/403, or out of quota) is retried after this long, unless the
# channel is saved sooner.
KEY_REFUSED_SECONDS = 3600.0
# A rate-limited key without Retry-After is retried after this long.
KEY_RATE_LIMITED_SECONDS = 30.0
# Keys of one channel one request tries before moving on to the next channel: a
# channel with many dead keys costs a request at most this many quick refusals.
MAX_KEYS_PER_ATTEMPT = 4

clock: Callable[[], float] = time.monotonic


@dataclass(frozen=True, slots=True)
class KeyTurn:
    """One of a channel's keys, as a request tries it: its place in the channel's list."""

    index: int
    key: str

    @property
    def ending(self) -> str:
        """Its last four characters: all that is ever shown or logged of a key."""
        return self.key[-4:]


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Return the wait a 429's `retry-after-ms` or `retry-after` asks for, or None.

    `retry-after` is seconds or an HTTP date. A value that cannot be read is None.
    """
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            value = float(milliseconds) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    text = (headers.get("retry-after") or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        value = moment.timestamp() - time.time()
    if not math.isfinite(value):
        return None
    return max(value, 0.0)


def set_aside_seconds(
    status_code: int, *, retry_after: float | None, is_quota_exhausted: bool = False
) -> float | None:
    """Return how long a key answered `status_code` is set aside (None: not the key's fault)."""
    if status_code in (401, 403) or (status_code == 429 and is_quota_exhausted):
        return KEY_REFUSED_SECONDS
    if status_code == 429:
        if retry_after is None:
            return KEY_RATE_LIMITED_SECONDS
        return min(retry_after, KEY_REFUSED_SECONDS)
    return None


class KeyRotation:
    """The keys of each channel in turn, minus those set aside (one per process)."""

    def __init__(self) -> None:
        self._turns: dict[int, int] = {}
        # (channel id, keys version, index of the key) → when it may be used again.
        self._set_aside: dict[tuple[int, str, int], float] = {}

    def keys_in_turn(self, route: ChannelRoute) -> list[KeyTurn]:
        """Return the keys a request tries, in order: the next in turn first, set-aside ones out."""
        keys = route.api_keys
        count = len(keys)
        if not count:
            return []
        start = self._turns.get(route.channel_id, 0) % count
        self._turns[route.channel_id] = start + 1
        now = clock()
        turns = []
        for offset in range(count):
            index = (start + offset) % count
            until = self._set_aside.get((route.channel_id, route.keys_version, index))
            if until is None or until <= now:
                turns.append(KeyTurn(index, keys[index]))
        return turns

    def set_aside(
        self, route: ChannelRoute, turn: KeyTurn, *, seconds: float, status_code: int
    ) -> None:
        """Leave this key out of the channel's turns for `seconds`."""
        now = clock()
        self._forget_expired(now)
        self._set_aside[(route.channel_id, route.keys_version, turn.index)] = now + seconds
        logger.warning(
            "Channel %s: key %s of %s (…%s) set aside for %.0f s after HTTP %s",
            route.name,
            turn.index + 1,
            len(route.api_keys),
            turn.ending,
            seconds,
            status_code,
        )

    def is_set_aside(self, route: ChannelRoute, index: int) -> bool:
        """Return whether the channel's key at `index` is set aside now."""
        until = self._set_aside.get((route.channel_id, route.keys_version, index))
        return until is not None and until > clock()

    def clear(self) -> None:
        """Forget every turn and every set-aside key (tests)."""
        self._turns.clear()
        self._set_aside.clear()

    def _forget_expired(self, now: float) -> None:
        for place in [place for place, until in self._set_aside.items() if until <= now]:
            del self._set_aside[place]


# The process's rotation: the relay's requests share it.
key_rotation = KeyRotation()
