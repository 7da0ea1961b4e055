"""Database connections outside Django's request cycle, and the answer when none is free.

Django gives a request's connection back when the request ends. Work on threads of
our own has no such end, so it gives its connection back itself: the relay's
database threads (`run_in_database_thread`) after every call, and the credit
meter's writer (`billing.meter`) after every round. With the pool (settings,
DATABASE_POOL_MAX_SIZE) every connection a process uses is lent by that pool, and
no thread keeps one while it waits for work; without it, each is closed.

When the pool lends no connection within DATABASE_POOL_TIMEOUT_SECONDS, psycopg_pool
raises PoolTimeout, which Django passes on as an OperationalError caused by it.
`database_busy` recognises that: the console and the API (comet.middleware,
core.api) and the relay (relay.app) then answer 503 "busy, retry in a few seconds"
rather than 500.
"""

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.db import connection
from django.utils.translation import gettext_noop
from psycopg_pool import PoolTimeout, TooManyRequests

P = ParamSpec("P")
R = TypeVar("R")

DATABASE_THREADS = 16

database_executor = ThreadPoolExecutor(max_workers=DATABASE_THREADS, thread_name_prefix="comet-db")

# What a request that found no free connection is told, and when to come back.
BUSY_MESSAGE = gettext_noop("Comet is busy right now. Retry in a few seconds.")
BUSY_CODE = "service_unavailable"
BUSY_RETRY_AFTER_SECONDS = 5


def connection_return() -> None:
    """Give this thread's database connection back: to the pool, or closed without one."""
    connection.close()


def _run(function: Callable[..., R], *args: object, **kwargs: object) -> R:
    try:
        return function(*args, **kwargs)
    finally:
        connection_return()


async def run_in_database_thread(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Return `function(*args, **kwargs)` computed on a database thread.

    The thread's connection goes back to the pool when the call ends, so the
    threads together never hold more than the pool lends.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        database_executor, functools.partial(_run, function, *args, **kwargs)
    )


def database_busy(error: BaseException | None) -> bool:
    """Return whether `error` comes from the pool having no connection free in time."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, PoolTimeout | TooManyRequests):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False
