"""Which channel made each response of the Responses API, and for which account.

A request that continues a conversation (`previous_response_id`) must go to the channel
that made the response it names: only that upstream (that account of the vendor) keeps
it. And since every customer's requests share our upstream keys, a response id is
usable only by the account that made it: an id this account did not make is answered
as not found (relay/README.md).

Remembered: the response's id → the channel's id, under the account's id, for
`RESPONSE_DAYS` (as long as OpenAI keeps a response). Never any content. In Redis
(REDIS_URL) so every relay process sees it; without Redis (`make run`) in the process's
memory, bounded.
"""

import logging
import time
from collections import OrderedDict

from .limits import REDIS_FAILURES, _prefix, limiter

logger = logging.getLogger("relay")

# OpenAI keeps a stored response 30 days.
RESPONSE_DAYS = 30
RESPONSE_SECONDS = RESPONSE_DAYS * 24 * 3600
# Responses remembered at most by a process without Redis (the oldest go first).
MAX_LOCAL_RESPONSES = 100_000

# response key → (channel id, when it is forgotten), without Redis.
_local: OrderedDict[str, tuple[int, float]] = OrderedDict()


def response_key(response_id: str, *, user_id: int) -> str:
    """Return where a response's channel is kept: under its account, so that another
    account's lookup of the same id finds nothing."""
    return f"{_prefix()}:relay:response:{user_id}:{response_id}"


async def response_remember(response_id: str, *, channel_id: int, user_id: int) -> None:
    """Remember that `channel_id` made `response_id` for the account `user_id`.

    A Redis failure is logged and forgotten: the answer is already the client's, and
    only a later continuation of this conversation is refused.
    """
    key = response_key(response_id, user_id=user_id)
    if not limiter().redis_url:
        _local[key] = (channel_id, time.monotonic() + RESPONSE_SECONDS)
        _local.move_to_end(key)
        while len(_local) > MAX_LOCAL_RESPONSES:
            _local.popitem(last=False)
        return
    try:
        await limiter().connection().client.set(key, channel_id, ex=RESPONSE_SECONDS)
    except REDIS_FAILURES as error:
        logger.warning("A response's channel was not remembered (%s)", type(error).__name__)


async def response_channel(response_id: str, *, user_id: int) -> int | None:
    """Return the id of the channel that made `response_id` for the account `user_id`, or
    None if this account made no such response (or it is older than RESPONSE_DAYS)."""
    key = response_key(response_id, user_id=user_id)
    if not limiter().redis_url:
        found = _local.get(key)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]
    value = await limiter().connection().client.get(key)
    return int(value) if value is not None else None
