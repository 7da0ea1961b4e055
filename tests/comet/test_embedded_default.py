"""`make run`'s embedded default, end to end: SQLite, one process, the credit meter
writing through the ORM.

Served by uvicorn as `bin/run` serves it (settings `comet.settings.local`, no
DATABASE_URL, no REDIS_URL), called by the official `openai` SDK from many threads at
once, stopped the way Ctrl-C stops it; then every answered request must be logged
and charged, nothing held, and `reconcile` must find the books closed.
"""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.relay.conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 40

SETUP = """
from accounts.models import User
from tokens.services import token_create
from billing.services import account_credit
user = User.objects.create_user("sqlite@example.com", password="not-used-here-0")
account_credit(user_id=user.pk, amount=2_000_000, idempotency_key="embedded-test")
_token, key = token_create(user=user, name="embedded")
print(key)
"""

BOOKS = """
from billing.models import Account, Reservation
from logs.models import RequestLog
account = Account.objects.get(user__email="sqlite@example.com")
print(account.balance, account.reserved, account.used, account.request_count,
      RequestLog.objects.count(), sum(RequestLog.objects.values_list("cost", flat=True)),
      Reservation.objects.filter(status="open").count())
"""


def test_the_embedded_default_meters_and_books_every_request_on_sqlite(tmp_path):
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "CACHE_KEY_PREFIX")
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="comet.settings.local",
        DATABASE_URL=f"sqlite:///{tmp_path / 'comet.sqlite3'}",
        COMET_SIGNUP_CREDIT_USD="0",
    )

    def manage(*arguments: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *arguments],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        return result.stdout

    # Given the embedded default set up as `make run` does, with a funded token
    manage("migrate", "--noinput", "-v0")
    manage("load_demo_catalog")
    manage("ensure_mock_channel")
    key = manage("shell", "-c", SETUP).strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "comet.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-proxy-headers",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=environment,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        # When the official SDK sends requests from 8 threads at once
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key)

        def call(number: int) -> int:
            answer = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"hello {number}"}],
            )
            return answer.usage.total_tokens

        with ThreadPoolExecutor(max_workers=8) as pool:
            totals = list(pool.map(call, range(REQUESTS)))
        assert all(total > 0 for total in totals)
    finally:
        # And the server is stopped as Ctrl-C stops it
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)

    # Then every request is logged and charged once, nothing is held, the books close
    balance, reserved, used, count, logged, costs, open_grants = (
        int(value) for value in manage("shell", "-c", BOOKS).splitlines()[-1].split()
    )
    assert (count, logged, reserved, open_grants) == (REQUESTS, REQUESTS, 0, 0)
    assert used == costs > 0
    assert balance == 2_000_000 - used
    assert "The books close" in manage("reconcile")
