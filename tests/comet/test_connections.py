"""PostgreSQL connections: a web process never holds more than its pool, even in a burst.

Comet is served for real (uvicorn in a subprocess, as the Procfile runs it) with a
small pool. Console page views and relay calls arrive at once while a sampler counts
the server's connections in `pg_stat_activity`, by the application name the server
is given in its DATABASE_URL. A second test holds the pool's only connection and
checks that what cannot get one is answered 503, never 500.
"""

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import psycopg
import pytest
from django.conf import settings
from django.test import Client

from accounts.services import user_line_set
from billing.services import account_credit
from logs.models import RequestLog
from models_catalog.models import CatalogModel, PricingGroup, Vendor
from models_catalog.services import catalog_entry_create
from relay.services import channel_create
from tests.factories import UserFactory
from tests.settings_module import settings_environment
from tokens.services import token_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
APPLICATION_NAME = "comet connections test"
MODEL = "gpt-test"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
POOL_SIZE = 4
PAGE_VIEWS = 120
RELAY_CALLS = 80


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(**query: str) -> str:
    """Return the URL of the test database, with `query` as connection options."""
    database = settings.DATABASES["default"]
    credentials = quote(database["USER"] or "")
    if database["PASSWORD"]:
        credentials += ":" + quote(database["PASSWORD"])
    host = database["HOST"] or "127.0.0.1"
    port = database["PORT"] or 5432
    url = f"postgres://{credentials}@{host}:{port}/{database['NAME']}"
    return f"{url}?{urlencode(query)}" if query else url


def connect() -> psycopg.Connection:
    """A connection of the test's own, not counted as the server's."""
    return psycopg.connect(database_url(application_name="comet connections sampler"))


def server_connections(conn: psycopg.Connection, *, waiting_on_a_lock: bool = False) -> int:
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = %s"
    )
    if waiting_on_a_lock:
        query += " AND wait_event_type = 'Lock'"
    row = conn.execute(query, [APPLICATION_NAME]).fetchone()
    assert row is not None
    return row[0]


@contextmanager
def comet_server(
    directory: Path, *, pool_max_size: int, pool_timeout_seconds: float, **environment: str
) -> Iterator[str]:
    """Serve Comet with uvicorn in a subprocess, its connections pooled; yield its root URL.

    The pool keeps one connection open when idle and waits `pool_timeout_seconds` for
    a free one (`comet.settings.base.postgresql_connections`).
    """
    port = free_port()
    pool = (
        f'postgresql_connections(DATABASES["default"], pool_max_size={pool_max_size}, '
        f"pool_min_size=1, pool_timeout_seconds={pool_timeout_seconds})"
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url(application_name=APPLICATION_NAME),
        **settings_environment(directory, "comet.settings.test", pool),
        **environment,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "comet.asgi:application",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=PROJECT_ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "uvicorn stopped"
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ConnectionSampler(threading.Thread):
    """Count the server's connections every few milliseconds; keep the peak."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.samples = 0
        self._stop_sampling = threading.Event()

    def run(self) -> None:
        with connect() as conn:
            conn.autocommit = True
            while not self._stop_sampling.is_set():
                self.peak = max(self.peak, server_connections(conn))
                self.samples += 1
                self._stop_sampling.wait(0.005)

    def stop(self) -> int:
        self._stop_sampling.set()
        self.join(timeout=10)
        return self.peak


@pytest.fixture
def signed_in(transactional_db) -> tuple[str, str]:
    """Return (the session cookie of a signed-in user, a key of their token on `mock`)."""
    user = UserFactory()
    account_credit(user_id=user.pk, amount=100_000_000, idempotency_key=f"test:{user.pk}")
    PricingGroup.objects.get_or_create(
        is_default=True, defaults={"name": "default", "display_name": "Default"}
    )
    vendor, _created = Vendor.objects.get_or_create(name="testvendor", display_name="Test vendor")
    catalog_entry_create(
        entry=CatalogModel(
            name=MODEL, vendor=vendor, model_ratio=Decimal("1.5"), completion_ratio=Decimal("2")
        )
    )
    channel_create(name="mock", kind="mock", served_models=[MODEL])
    # The default line allows 100 in flight per account: this one may have more.
    user_line_set(
        user=user,
        pricing_group_id=None,
        concurrency_limit=1000,
        rpm_limit=None,
        tpm_limit=None,
        actor=None,
    )
    _token, key = token_create(user=user, name="burst", concurrency_limit=1000)
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value, key


def wait_for(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_burst_of_page_views_and_relay_calls_stays_within_the_documented_bound(
    signed_in, tmp_path
):
    session, key = signed_in
    # Given Comet served with a pool of POOL_SIZE connections (waiting up to 30 s for one)
    with comet_server(tmp_path, pool_max_size=POOL_SIZE, pool_timeout_seconds=30) as url:
        sampler = ConnectionSampler()
        sampler.start()

        # When signed-in page views and relay calls all arrive at once
        async def burst() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=PAGE_VIEWS + RELAY_CALLS)
            cookies = {settings.SESSION_COOKIE_NAME: session}
            async with httpx.AsyncClient(limits=limits, timeout=120, cookies=cookies) as client:
                pages = [client.get(f"{url}/") for _ in range(PAGE_VIEWS)]
                calls = [
                    client.post(
                        f"{url}/v1/chat/completions",
                        json=CHAT,
                        headers={"authorization": f"Bearer {key}"},
                    )
                    for _ in range(RELAY_CALLS)
                ]
                # Interleaved, so both kinds are in flight together.
                mixed = [request for pair in zip(pages, calls, strict=False) for request in pair]
                mixed += pages[len(calls) :]
                return await asyncio.gather(*mixed)

        responses = asyncio.run(burst())
        # (the relay writes its requests after answering: they count too)
        written = wait_for(lambda: RequestLog.objects.count() >= RELAY_CALLS)
        peak = sampler.stop()

    # Then every request was answered in full
    statuses = [response.status_code for response in responses]
    assert statuses == [200] * len(responses)
    page_views = [r for r in responses if r.request.url.path == "/"]
    assert len(page_views) == PAGE_VIEWS
    assert all("Welcome," in r.text for r in page_views)
    assert written, RequestLog.objects.count()
    # and the server never held more connections than the documented bound.
    assert sampler.samples > 10
    print(f"peak connections: {peak} (bound {POOL_SIZE})")
    assert 1 <= peak <= POOL_SIZE


def test_what_cannot_get_a_connection_in_time_is_answered_503(signed_in, tmp_path):
    session, key = signed_in
    # Given Comet with a pool of ONE connection that waits at most half a second
    with (
        comet_server(tmp_path, pool_max_size=1, pool_timeout_seconds=0.5) as url,
        connect() as locker,
        connect() as watcher,
    ):
        watcher.autocommit = True
        cookies = {settings.SESSION_COOKIE_NAME: session}
        with httpx.Client(timeout=30, cookies=cookies) as client:
            # and a page view holding that connection while it waits on a table lock
            locker.execute("LOCK TABLE accounts_user IN ACCESS EXCLUSIVE MODE")
            held: dict[str, httpx.Response] = {}
            holder = threading.Thread(target=lambda: held.update(page=client.get(f"{url}/")))
            holder.start()
            assert wait_for(lambda: server_connections(watcher, waiting_on_a_lock=True) == 1)

            # When a page view, an API call and a relay call arrive
            page = client.get(f"{url}/")
            api = client.get(f"{url}/api/v1/logs")
            relay = client.post(
                f"{url}/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"}
            )
            locker.rollback()
            holder.join(timeout=30)

    # Then each is told the service is busy, in its own format, and may retry
    assert page.status_code == 503
    assert "Busy" in page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["retry-after"]
    assert api.status_code == 503
    assert api.json()["error"]["code"] == "service_unavailable"
    assert api.headers["retry-after"]
    assert relay.status_code == 503
    assert relay.json()["error"]["code"] == "service_unavailable"
    assert relay.headers["retry-after"]
    # while the page view that held the connection is served once the lock is gone.
    assert held["page"].status_code == 200
