"""Count the requests the relay refuses after it knows their token, and write the counts.

A refusal is answered at once; its count waits here, per (token, error code, second),
and one task writes what gathered every `FLUSH_SECONDS` in one statement
(`logs.services.refusals_record`). A flood of refusals therefore costs a few small
writes per second, not one per request, and adds at most one row per token, error
code and second. Counts lost with a crashed process are only
counts: no money depends on them.
"""

import asyncio
import logging
import time
from datetime import UTC, datetime

from accounts.tokens import TokenInfo
from core.db import run_in_database_thread
from logs.data import RefusalData
from logs.services import refusals_record

logger = logging.getLogger("relay")

FLUSH_SECONDS = 0.25


class RefusalCounter:
    """Refusals counted in this process, written every `flush_seconds`."""

    def __init__(self, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.flush_seconds = flush_seconds
        self._counts: dict[tuple[int, str, int], RefusalData] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        running = self._task is not None and not self._task.done()
        return len(self._counts) + (1 if running else 0)

    def count(
        self, *, token: TokenInfo, status_code: int, error_code: str, model: str, address: str
    ) -> None:
        second = int(time.time())
        key = (token.id, error_code, second)
        seen = self._counts.get(key)
        self._counts[key] = RefusalData(
            second=datetime.fromtimestamp(second, UTC),
            user_id=token.user_id,
            token_id=token.id,
            token_name=token.name,
            status_code=status_code,
            error_code=error_code,
            model=model,
            client_ip=address,
            count=1 if seen is None else seen.count + 1,
        )
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def aclose(self) -> None:
        """Write every count gathered so far."""
        self.flush_seconds = 0
        while self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)

    async def _drain(self) -> None:
        while self._counts:
            if self.flush_seconds:
                await asyncio.sleep(self.flush_seconds)
            batch, self._counts = list(self._counts.values()), {}
            try:
                await run_in_database_thread(refusals_record, batch)
            except Exception:
                logger.exception("Writing %d refusal counts failed", len(batch))
