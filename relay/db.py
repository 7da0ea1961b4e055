"""Run ORM work from the relay's event loop on a pool of threads.

The relay is not a Django request/response cycle, so nothing closes connections
at "request end": each worker thread keeps its own connection, drops it when it
outlives CONN_MAX_AGE, and after a database error so the next call reconnects.
"""

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.db import DatabaseError, connection

P = ParamSpec("P")
R = TypeVar("R")

DATABASE_THREADS = 16

database_executor = ThreadPoolExecutor(max_workers=DATABASE_THREADS, thread_name_prefix="relay-db")


def _run(function: Callable[..., R], *args: object, **kwargs: object) -> R:
    close_at = connection.close_at
    if close_at is not None and time.monotonic() >= close_at:
        connection.close()
    try:
        return function(*args, **kwargs)
    except DatabaseError:
        if connection.connection is not None and not connection.is_usable():
            connection.close()
        raise


async def run_in_database_thread(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Return `function(*args, **kwargs)` computed on a database thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        database_executor, functools.partial(_run, function, *args, **kwargs)
    )
