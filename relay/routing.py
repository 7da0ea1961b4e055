"""Pick channels for a request: highest priority first, weighted within a priority.

Each process keeps the table of enabled channels in memory and reloads it every
`REFRESH_SECONDS`, so a status change made anywhere is seen everywhere that soon,
without a query per request.
"""

import asyncio
import random
import time
from dataclasses import dataclass, field
from itertools import groupby

from core.db import run_in_database_thread

from .selectors import ChannelRoute, channel_routes_enabled, default_pricing_group_id

REFRESH_SECONDS = 1.0


@dataclass
class RoutingTable:
    routes: list[ChannelRoute] = field(default_factory=list)
    default_group_id: int | None = None
    loaded_at: float = float("-inf")


_table = RoutingTable()
_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def _load() -> RoutingTable:
    return RoutingTable(
        routes=channel_routes_enabled(),
        default_group_id=default_pricing_group_id(),
        loaded_at=time.monotonic(),
    )


async def routing_table() -> RoutingTable:
    """Return the routing table, reloading it when it is older than REFRESH_SECONDS."""
    global _table
    if time.monotonic() - _table.loaded_at < REFRESH_SECONDS:
        return _table
    loop = asyncio.get_running_loop()
    lock = _locks.setdefault(loop, asyncio.Lock())
    async with lock:
        if time.monotonic() - _table.loaded_at >= REFRESH_SECONDS:
            _table = await run_in_database_thread(_load)
    return _table


def routing_table_expire() -> None:
    """Make the next request reload the table (after this process changed a channel)."""
    _table.loaded_at = float("-inf")


def candidate_routes(
    table: RoutingTable, *, model_name: str, pricing_group_id: int | None, kinds: frozenset[str]
) -> list[ChannelRoute]:
    """Return the channels to try for a request, in order.

    Priorities are tried from the highest; within one priority the order is a
    weighted random permutation, so load spreads by weight and a retry goes to a
    different channel of the same priority first.
    """
    group_id = pricing_group_id if pricing_group_id is not None else table.default_group_id
    eligible = [
        route
        for route in table.routes
        if model_name in route.served_models
        and route.kind in kinds
        and (not route.pricing_group_ids or group_id in route.pricing_group_ids)
    ]
    eligible.sort(key=lambda route: -route.priority)
    ordered: list[ChannelRoute] = []
    for _priority, same_priority in groupby(eligible, key=lambda route: route.priority):
        routes = list(same_priority)
        if len(routes) > 1:
            # Efraimidis-Spirakis: sorting by u**(1/weight) draws without replacement by weight.
            routes.sort(key=lambda route: random.random() ** (1.0 / route.weight), reverse=True)
        ordered.extend(routes)
    return ordered
