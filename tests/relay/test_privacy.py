"""No request or response content is stored or logged: a canary string is never found."""

import logging
import uuid

import httpx
import pytest
from django.db import connection

from .conftest import MODEL, make_channel, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)


def _database_occurrences(canary: str) -> int:
    """Return how many rows of any table contain `canary` in any column."""
    found = 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        for (table,) in cursor.fetchall():
            cursor.execute(
                f'SELECT count(*) FROM "{table}" AS t WHERE t::text LIKE %s',  # noqa: S608
                [f"%{canary}%"],
            )
            found += cursor.fetchone()[0]
    return found


def test_a_canary_in_prompts_reaches_neither_the_database_nor_the_logs(
    relay_url, token_key, catalog_model, fake_upstream, caplog
):
    canary = f"canary-{uuid.uuid4().hex}"
    make_channel("breaks", f"{fake_upstream.url}/status-500/v1", priority=5)
    make_channel("fake", f"{fake_upstream.url}/v1")
    headers = {"authorization": f"Bearer {token_key}"}
    caplog.set_level(logging.DEBUG)

    with caplog.at_level(logging.DEBUG):
        for body in (
            {"model": MODEL, "messages": [{"role": "user", "content": canary}]},
            {"model": MODEL, "messages": [{"role": "user", "content": canary}], "stream": True},
            {"model": MODEL, "input": canary},
            {"model": canary, "messages": []},
            {"model": MODEL, "messages": [{"role": "user", "content": canary}], "max_tokens": -1},
        ):
            path = "/embeddings" if "input" in body else "/chat/completions"
            httpx.post(f"{relay_url}{path}", json=body, headers=headers, timeout=10)
        httpx.post(
            f"{relay_url}/chat/completions",
            content=f'{{"model": "{canary}", broken'.encode(),
            headers={**headers, "content-type": "application/json"},
            timeout=10,
        )
        wait_for_logs(3)

    assert _database_occurrences(canary) == 0
    assert canary not in caplog.text
    assert _database_occurrences(MODEL) >= 3  # The search itself works.
