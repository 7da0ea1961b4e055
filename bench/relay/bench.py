"""Relay overhead against calling the fake upstream directly, in the same run.

Starts the fake upstream and the relay (uvicorn, comet.asgi) as processes, creates a
funded user, a token, a model and a channel, then drives both with a minimal
keep-alive HTTP/1.1 load generator (raw asyncio on uvloop, so the client costs little):
concurrency 1 (p50, p99) and concurrency 50 (throughput, p50, p99). Auth, limits,
billing (hold + settle in the credit meter, log rows written in batches) and logging are all on.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/relay/bench.py

Options: --workers N (relay processes), --accounts N, --requests N, --route-overhead.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[2]
MODEL = "bench-model"
UPSTREAM_KEY = "sk-bench-upstream"


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comet.settings.local")
    os.environ.setdefault("DEBUG", "False")
    import django

    django.setup()


BENCH_USERS: list[int] = []


def books_check(requests: int) -> bool:
    """After the relay stopped: every request logged and charged, nothing held, no drift."""
    from django.db.models import Sum

    from billing.models import Account, LedgerEntry
    from billing.selectors import books_drift
    from logs.models import RequestLog

    logs = RequestLog.objects.filter(user_id__in=BENCH_USERS)
    logged, charged = logs.count(), logs.aggregate(total=Sum("cost"))["total"] or 0
    accounts = Account.objects.filter(pk__in=BENCH_USERS)
    balance = sum(account.balance for account in accounts)
    reserved = sum(account.reserved for account in accounts)
    # What was credited (the bench's top-up, and a welcome credit where one is set).
    entries = LedgerEntry.objects.filter(account_id__in=BENCH_USERS)
    initial = entries.aggregate(total=Sum("amount"))["total"] or 0
    drift = books_drift(user_ids=BENCH_USERS)
    exact = logged == requests and balance == initial - charged and reserved == 0 and not drift
    print(
        f"books: {logged} of {requests} requests logged, balance {balance} = {initial} - "
        f"{charged}, {reserved} held: {'exact, zero drift' if exact else f'DRIFT {drift}'}"
    )
    return exact


def prepare(upstream_url: str, accounts: int = 1) -> str:
    """Create the bench's users, tokens, model and channel; return the tokens' keys.

    Several keys (comma-separated) belong to as many accounts: the load generator's
    connections take turns, to show how metering scales off a single hot account.
    """
    from decimal import Decimal

    from django.core.management import call_command

    from accounts.services import user_line_set
    from billing.services import account_credit
    from models_catalog.models import CatalogModel, PricingGroup, Vendor
    from models_catalog.services import catalog_entry_create
    from relay.models import Channel
    from relay.services import channel_create
    from tests.factories import UserFactory
    from tokens.services import token_create

    call_command("migrate", verbosity=0)
    PricingGroup.objects.get_or_create(
        is_default=True, defaults={"name": "default", "display_name": "Default"}
    )
    vendor, _ = Vendor.objects.get_or_create(name="bench", defaults={"display_name": "Bench"})
    if not CatalogModel.objects.filter(name=MODEL).exists():
        catalog_entry_create(
            entry=CatalogModel(name=MODEL, vendor=vendor, model_ratio=Decimal("0.5"))
        )
    Channel.objects.filter(name__startswith="bench").delete()
    channel_create(
        name=f"bench-{uuid.uuid4().hex[:6]}",
        kind="openai",
        base_url=f"{upstream_url}/v1",
        api_key=UPSTREAM_KEY,
        served_models=[MODEL],
    )
    keys = []
    for _ in range(accounts):
        user = UserFactory(email=f"bench-{uuid.uuid4().hex[:8]}@example.com")
        BENCH_USERS.append(user.pk)
        account_credit(user_id=user.pk, amount=1_000_000_000, idempotency_key=f"bench:{user.pk}")
        # The default line allows 100 in flight per account: this one may have more.
        user_line_set(
            user=user,
            pricing_group_id=None,
            concurrency_limit=1000,
            rpm_limit=None,
            tpm_limit=None,
            actor=None,
        )
        _token, key = token_create(user=user, name="bench", concurrency_limit=1000)
        keys.append(key)
    return ",".join(keys)


class Connection:
    """One keep-alive HTTP/1.1 connection sending the same request again and again."""

    def __init__(
        self, host: str, port: int, path: str, key: str, body: bytes, method: str = "POST"
    ) -> None:
        self.host, self.port = host, port
        self.request = (
            f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def call(self) -> tuple[int, float]:
        started = time.perf_counter()
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await self.reader.readexactly(length)
        return status, time.perf_counter() - started

    def close(self) -> None:
        self.writer.close()


async def drive(
    url: str,
    key: str,
    *,
    concurrency: int,
    requests: int,
    path: str = "/v1/chat/completions",
    method: str = "POST",
) -> dict:
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}
    ).encode()
    if method == "GET":
        body = b""
    keys = key.split(",")
    connections = [
        Connection(host, int(port), path, keys[number % len(keys)], body, method)
        for number in range(concurrency)
    ]
    await asyncio.gather(*(connection.open() for connection in connections))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    remaining = requests

    async def worker(connection: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status, latency = await connection.call()
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(latency)

    started = time.perf_counter()
    await asyncio.gather(*(worker(connection) for connection in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "statuses": statuses,
    }


def wait_until_up(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v1/models", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--serial-requests", type=int, default=1000)
    parser.add_argument("--route-overhead", action="store_true")
    parser.add_argument("--accounts", type=int, default=1, help="spread the load over N accounts")
    arguments = parser.parse_args()
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        raise SystemExit("Set DATABASE_URL (PostgreSQL) and REDIS_URL: the bench measures them.")
    setup_django()
    upstream_url, relay_url = "http://127.0.0.1:9101", "http://127.0.0.1:9102"
    environment = {
        **os.environ,
    }
    python = sys.executable
    upstream = subprocess.Popen(
        [python, "-m", "tests.fake_upstream", "--port", "9101"], cwd=ROOT, env=environment
    )
    relay = subprocess.Popen(
        [
            python,
            "-m",
            "uvicorn",
            "comet.asgi:application",
            "--app-dir",
            str(ROOT),
            "--port",
            "9102",
            "--workers",
            str(arguments.workers),
            "--no-access-log",
            "--log-level",
            "warning",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-proxy-headers",
        ],
        cwd=ROOT,
        env=environment,
    )
    try:
        key = prepare(upstream_url, arguments.accounts)
        wait_until_up(upstream_url)
        wait_until_up(relay_url)
        uvloop.install()
        if arguments.route_overhead:
            # The same trivial answer (an unknown route's 404) from Django's request cycle
            # and from the lean relay app: what /v1/ would cost as a Django view.
            for name, path in (("django 404", "/no-such-page"), ("relay 404", "/v1/no-such")):
                asyncio.run(
                    drive(relay_url, key, concurrency=1, requests=200, path=path, method="GET")
                )
                result = asyncio.run(
                    drive(relay_url, key, concurrency=1, requests=2000, path=path, method="GET")
                )
                print(f"{name}: p50 {result['p50_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms")
            return
        results = {}
        for name, url, token in (("direct", upstream_url, UPSTREAM_KEY), ("relay", relay_url, key)):
            asyncio.run(drive(url, token, concurrency=10, requests=300))  # warm-up
            results[name] = {
                "c1": asyncio.run(
                    drive(url, token, concurrency=1, requests=arguments.serial_requests)
                ),
                "c50": asyncio.run(drive(url, token, concurrency=50, requests=arguments.requests)),
            }
        direct, through = results["direct"], results["relay"]
        print(json.dumps(results, indent=2))
        print(
            f"\nworkers={arguments.workers} accounts={arguments.accounts}\n"
            f"c=1  overhead p50 {through['c1']['p50_ms'] - direct['c1']['p50_ms']:.2f} ms, "
            f"p99 {through['c1']['p99_ms'] - direct['c1']['p99_ms']:.2f} ms "
            f"(relay p50 {through['c1']['p50_ms']:.2f} / p99 {through['c1']['p99_ms']:.2f}; "
            f"direct {direct['c1']['p50_ms']:.2f} / {direct['c1']['p99_ms']:.2f})\n"
            f"c=50 relay {through['c50']['rps']:.0f} req/s, p50 {through['c50']['p50_ms']:.2f} ms, "
            f"p99 {through['c50']['p99_ms']:.2f} ms; direct {direct['c50']['rps']:.0f} req/s, "
            f"p50 {direct['c50']['p50_ms']:.2f} ms, p99 {direct['c50']['p99_ms']:.2f} ms"
        )
    finally:
        # SIGTERM: the relay writes what it settled and returns its grants on the way out.
        relay.terminate()
        upstream.terminate()
        relay.wait()
        upstream.wait()
    if not arguments.route_overhead:
        sent = 300 + arguments.serial_requests + arguments.requests
        if not books_check(sent):
            sys.exit(1)


if __name__ == "__main__":
    main()
