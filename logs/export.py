"""CSV export of a filtered range, streamed in keyset chunks (constant memory)."""

import csv
from collections.abc import Iterator
from datetime import UTC, tzinfo

from core.money import micro_to_usd
from logs.forms import Cursor, LogFilters
from logs.selectors import log_list

CHUNK_SIZE = 2000
HEADER = [
    "created_at",
    "request_id",
    "token_name",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "ip",
    "status",
    "error_code",
    "latency_ms",
    "first_token_ms",
    "stream",
]
_FIELDS = [
    "id",
    "created_at",
    "request_id",
    "token_name",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "client_ip",
    "status_code",
    "error_code",
    "latency_ms",
    "first_token_ms",
    "is_stream",
]


class _Line:
    """A file-like object whose write returns what was written (for csv.writer)."""

    def write(self, value: str) -> str:
        return value


def _safe(value: str) -> str:
    # A cell starting with = + - @ runs as a formula in spreadsheets; quote it away.
    return f"'{value}" if value[:1] in ("=", "+", "-", "@") else value


def csv_lines(
    *, filters: LogFilters, zone: tzinfo = UTC, chunk_size: int = CHUNK_SIZE
) -> Iterator[str]:
    """Yield the CSV of every row matching `filters`, newest first, one line at a time.

    Times are ISO 8601 in `zone` with their offset (2026-12-06T09:30:00.123456+08:00):
    a spreadsheet or a program reads the same moment whatever zone it assumes.
    Each chunk is its own keyset query after the last row of the previous one, so
    no query stays open between chunks and memory holds one chunk at most.
    """
    writer = csv.writer(_Line())
    yield writer.writerow(HEADER)
    rows = log_list(filters=filters).values_list(*_FIELDS)
    cursor: Cursor | None = None
    while True:
        chunk = rows
        if cursor is not None:
            chunk = chunk.filter(created_at__lte=cursor.created_at).exclude(
                created_at=cursor.created_at, id__gte=cursor.id
            )
        batch = list(chunk[:chunk_size])
        for row in batch:
            (
                _id,
                created_at,
                request_id,
                token_name,
                model,
                prompt,
                completion,
                cached,
                cost,
                ip,
                status,
                error_code,
                latency,
                first_token,
                stream,
            ) = row
            yield writer.writerow(
                [
                    created_at.astimezone(zone).isoformat(),
                    request_id,
                    _safe(token_name),
                    _safe(model),
                    prompt,
                    completion,
                    cached,
                    micro_to_usd(cost),
                    ip,
                    status,
                    error_code,
                    latency,
                    "" if first_token is None else first_token,
                    "true" if stream else "false",
                ]
            )
        if len(batch) < chunk_size:
            return
        cursor = Cursor(batch[-1][1], batch[-1][0])
