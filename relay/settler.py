"""Settle the relay's requests in batches, after their responses are sent.

Each request hands its settlement to this process's batcher and returns. One task
(on the event loop serving the relay; uvicorn runs one per process) drains the queue:
it takes up to `RELAY_SETTLE_BATCH_SIZE` waiting settlements and settles them with
`billing.metering.usage_settle_many`, ONE statement and commit on a database thread,
while the next ones queue up. Under load a batch holds every request that finished
while the previous one ran, so the hot account row is written once per batch instead
of once per request; alone, a request is settled after `RELAY_SETTLE_BATCH_WAIT_MS`
(20 by default), the time a batch waits for company first: one request at a time,
the settle statement then runs once per few requests instead of after each, so it
rarely holds the account row when the next reservation needs it.

A batch lost with its process (a crash in its wait or before its commit) charges
nothing: its reservations stay open until their lease ends and
`reservation_release_expired` frees them, as for any settlement that never arrived.
"""

import asyncio
import logging

from billing.metering import Settlement, usage_settle_many
from core.db import run_in_database_thread

logger = logging.getLogger("relay")


class SettleBatcher:
    """Queue settlements; settle them in batches on a database thread."""

    def __init__(self, *, batch_size: int, wait_seconds: float = 0.0) -> None:
        self.batch_size = max(1, batch_size)
        self.wait_seconds = wait_seconds
        self._queue: list[Settlement] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Return how many settlements are queued or being written."""
        running = self._task is not None and not self._task.done()
        return len(self._queue) + (1 if running else 0)

    def submit(self, settlement: Settlement) -> None:
        """Queue one settlement; the drain task starts if it is not running."""
        self._queue.append(settlement)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def aclose(self) -> None:
        """Wait until every queued settlement is written."""
        while self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)

    async def _drain(self) -> None:
        while self._queue:
            if self.wait_seconds and len(self._queue) < self.batch_size:
                await asyncio.sleep(self.wait_seconds)
            batch = self._queue[: self.batch_size]
            del self._queue[: self.batch_size]
            try:
                errors = await run_in_database_thread(usage_settle_many, batch)
            except Exception:
                # The reservations' leases still bound what these requests hold.
                logger.exception("Settling a batch of %d requests failed", len(batch))
                continue
            for settlement, error in zip(batch, errors, strict=True):
                if error is not None:
                    logger.error(
                        "Settling request %s failed", settlement.request_id, exc_info=error
                    )
