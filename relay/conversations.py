"""Which channel made each response of the Responses API, and for which account.

A request that continues a conversation (`previous_response_id`) must go to the channel
that made the response it names: only that upstream (that account of the vendor) keeps
it. And since every customer's requests share our upstream keys, a response id is
usable only by the account that made it: an id this account did not make is answered
as not found (relay/README.md).

Remembered: the response's id → the channel's id and the size of its context in tokens
(its input plus its output, which a continuation is billed again as input: the hold
counts it), under the account's id, for `RESPONSE_DAYS` (as long as OpenAI keeps a
response). Never any content: two numbers, "channel_id:tokens". In Redis
(REDIS_URL) so every relay process sees it; without Redis (`make run`) in the process's
memory, bounded.
"""

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from .limits import REDIS_FAILURES, _prefix, limiter

logger = logging.getLogger("relay")

# OpenAI keeps a stored response 30 days.
RESPONSE_DAYS = 30
RESPONSE_SECONDS = RESPONSE_DAYS * 24 * 3600
# Responses remembered at most by a process without Redis (the oldest go first).
MAX_LOCAL_RESPONSES = 100_000


@dataclass(frozen=True, slots=True)
class MadeResponse:
    """What is remembered of a response: the channel that made it, and its context (input
    plus output tokens, as the upstream reported them), which continuing it sends again."""

    channel_id: int
    context_tokens: int = 0


# response key → (what is remembered, when it is forgotten), without Redis.
_local: OrderedDict[str, tuple[MadeResponse, float]] = OrderedDict()


def response_key(response_id: str, *, user_id: int) -> str:
    """Return where a response's channel is kept: under its account, so that another
    account's lookup of the same id finds nothing."""
    return f"{_prefix()}:relay:response:{user_id}:{response_id}"


async def response_remember(
    response_id: str, *, channel_id: int, context_tokens: int, user_id: int
) -> None:
    """Remember that `channel_id` made `response_id` for the account `user_id`, and that it
    ended with `context_tokens` of context.

    A Redis failure is logged and forgotten: the answer is already the client's, and
    only a later continuation of this conversation is refused.
    """
    key = response_key(response_id, user_id=user_id)
    made = MadeResponse(channel_id, max(context_tokens, 0))
    if not limiter().redis_url:
        _local[key] = (made, time.monotonic() + RESPONSE_SECONDS)
        _local.move_to_end(key)
        while len(_local) > MAX_LOCAL_RESPONSES:
            _local.popitem(last=False)
        return
    value = f"{made.channel_id}:{made.context_tokens}"
    try:
        await limiter().connection().client.set(key, value, ex=RESPONSE_SECONDS)
    except REDIS_FAILURES as error:
        logger.warning("A response's channel was not remembered (%s)", type(error).__name__)


def _made_response(value: bytes | str) -> MadeResponse | None:
    """Read a remembered value: "channel_id:tokens", or "channel_id" alone as remembered
    before the context was (its context counted as 0). Anything else is not found."""
    text = value.decode() if isinstance(value, bytes) else value
    channel, _colon, tokens = text.partition(":")
    try:
        return MadeResponse(int(channel), int(tokens) if tokens else 0)
    except ValueError:
        return None


async def response_made(response_id: str, *, user_id: int) -> MadeResponse | None:
    """Return what is remembered of `response_id` for the account `user_id`, or None if this
    account made no such response (or it is older than RESPONSE_DAYS)."""
    key = response_key(response_id, user_id=user_id)
    if not limiter().redis_url:
        found = _local.get(key)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]
    value = await limiter().connection().client.get(key)
    return _made_response(value) if value is not None else None
