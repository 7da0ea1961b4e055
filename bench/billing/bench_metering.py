"""Benchmark: exact billed requests per second (reserve + settle) on ONE hot account.

Runs, in the same invocation and against the same PostgreSQL:
1. pgbench's rate of a single-row UPDATE (`UPDATE ... SET n = n + 1 WHERE id = 1`)
   at each concurrency, in a scratch table of the same database;
2. hold + settle through a credit meter per worker process (`billing.meter`, as
   each relay process does: requests held in memory against grants, written in
   batches by the meter's writer), from worker threads spread over worker
   processes, all on one account and one token, at each concurrency;
then checks the books: balance = initial - Σ costs exactly, and `books_drift` is empty.

Usage (see README.md):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/comet_money \\
    REDIS_URL=redis://127.0.0.1:6379/11 \\
    .venv/bin/python bench/billing/bench_metering.py --seconds 10 --concurrency 1 16 50
"""

import argparse
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comet.settings.test")

from logs.data import RequestLogData  # noqa: E402 (plain dataclasses, no Django)

COST = 1_237
HOLD = 5_000
LOG = RequestLogData(model="bench-model", client_ip="198.51.100.1", token_name="bench")  # noqa: S106


def _setup_django() -> None:
    import django

    django.setup()


def _database() -> dict:
    from django.conf import settings

    return settings.DATABASES["default"]


def pgbench_rate(clients: int, seconds: int) -> float:
    """Return pgbench's transactions per second for a single-row UPDATE."""
    database = _database()
    connection_args = [
        "-h",
        database["HOST"] or "127.0.0.1",
        "-p",
        str(database["PORT"] or 5432),
        "-U",
        database["USER"],
    ]
    psql = ["psql", *connection_args, "-q", "-d", database["NAME"], "-v", "ON_ERROR_STOP=1", "-c"]
    subprocess.run(
        [
            *psql,
            "SET client_min_messages = warning; DROP TABLE IF EXISTS bench_hot_row; "
            "CREATE TABLE bench_hot_row (id int PRIMARY KEY, n bigint NOT NULL); "
            "INSERT INTO bench_hot_row VALUES (1, 0);",
        ],
        check=True,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write("UPDATE bench_hot_row SET n = n + 1 WHERE id = 1;\n")
    try:
        result = subprocess.run(
            [
                "pgbench",
                *connection_args,
                "-n",
                "-f",
                script.name,
                "-c",
                str(clients),
                "-j",
                str(min(clients, 2)),
                "-T",
                str(seconds),
                database["NAME"],
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        os.unlink(script.name)
        subprocess.run([*psql, "DROP TABLE IF EXISTS bench_hot_row;"], check=True)
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", result.stdout)
    if match is None:
        raise RuntimeError(result.stdout + result.stderr)
    return float(match.group(1))


def _run_threads(arguments: tuple, step, finish=None) -> None:
    """Run `threads` threads, each calling `step(index, token_id, user_id, request_id)`
    with fresh request ids from `start_at` until `deadline`, then `finish(index)`.

    Threads take the accounts in turn (all the same one with --accounts 1), and open
    their database connection before the clock starts.
    """
    threads, first_thread, pairs, start_at, deadline = arguments
    import threading

    from django.db import connection

    def loop(index: int) -> None:
        token_id, user_id = pairs[(first_thread + index) % len(pairs)]
        prefix = uuid.uuid4().hex[:12]
        connection.ensure_connection()
        while time.time() < start_at:
            time.sleep(0.001)
        number = 0
        while time.time() < deadline:
            step(index, token_id, user_id, f"{prefix}-{number}")
            number += 1
        if finish is not None:
            finish(index)
        connection.close()

    workers = [threading.Thread(target=loop, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _worker_process(arguments: tuple) -> tuple[int, int, float]:
    """Hold + settle through this process's credit meter, as a relay process does.

    Returns (billed, errors, when the last of them was written): the meter writes
    settled requests in the background, so the clock stops when `close` has written
    them all and returned the grants, not at the deadline.
    """
    _setup_django()
    from django.db import connection

    from billing.grants import UsageRefused
    from billing.meter import CreditMeter

    meter = CreditMeter()
    counts = [0] * arguments[0]
    errors = [0] * arguments[0]

    def step(index: int, token_id: int, user_id: int, request_id: str) -> None:
        try:
            meter.reserve(token_id=token_id, user_id=user_id, request_id=request_id, amount=HOLD)
        except UsageRefused:
            errors[index] += 1
            return
        meter.settle(request_id=request_id, cost=COST, log=LOG)
        counts[index] += 1

    _run_threads(arguments, step)
    meter.close()
    written_at = time.time()
    connection.close()
    return sum(counts), sum(errors), written_at


def metering_rate(
    concurrency: int,
    processes: int,
    seconds: int,
    pairs: list[tuple[int, int]],
):
    processes = min(processes, concurrency)
    shares = [
        concurrency // processes + (1 if index < concurrency % processes else 0)
        for index in range(processes)
    ]
    start_at = time.time() + 3 + 0.05 * concurrency
    deadline = start_at + seconds
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        results = pool.map(
            _worker_process,
            [
                (share, sum(shares[:number]), pairs, start_at, deadline)
                for number, share in enumerate(shares)
            ],
        )
    billed = sum(result[0] for result in results)
    errors = sum(result[1] for result in results)
    # Until the last request was written, not just served.
    seconds = max(result[2] for result in results) - start_at
    return billed / seconds, billed, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 50])
    parser.add_argument("--processes", type=int, default=2, help="worker processes (cores)")
    parser.add_argument(
        "--accounts",
        type=int,
        default=1,
        help="spread the workers over this many accounts (1 = the hot-account case)",
    )
    options = parser.parse_args()
    _setup_django()

    from accounts.models import User
    from billing.models import Account
    from billing.selectors import books_drift
    from billing.services import account_credit
    from logs.models import RequestLog
    from tokens.services import token_create

    initial = 10**15
    pairs = []
    for _ in range(options.accounts):
        user = User.objects.create_user(f"bench-{uuid.uuid4().hex[:8]}@example.com")
        account_credit(user_id=user.pk, amount=initial, idempotency_key=f"bench:{user.pk}")
        token, _key = token_create(user=user, name="bench")
        pairs.append((token.pk, user.pk))
    user_ids = [user_id for _token_id, user_id in pairs]

    print(
        f"PostgreSQL {_database()['NAME']}, {os.cpu_count()} CPUs, {options.seconds}s per run, "
        f"{options.accounts} account(s)"
    )
    print(
        f"{'concurrency':>11} {'pgbench UPDATE/s':>17} {'billed req/s':>13} "
        f"{'ratio':>6} {'refused':>8}"
    )
    for concurrency in options.concurrency:
        pg_rate = pgbench_rate(concurrency, options.seconds)
        rate, _billed, errors = metering_rate(
            concurrency,
            options.processes,
            options.seconds,
            pairs,
        )
        print(
            f"{concurrency:>11} {pg_rate:>17.0f} {rate:>13.0f} {rate / pg_rate:>6.2f} {errors:>8}"
        )

    accounts = Account.objects.filter(pk__in=user_ids)
    balance = sum(account.balance for account in accounts)
    reserved = sum(account.reserved for account in accounts)
    logged = RequestLog.objects.filter(user_id__in=user_ids).count()
    charged = logged * COST
    drift = books_drift(user_ids=user_ids)
    expected = initial * len(user_ids) - charged
    exact = balance == expected and reserved == 0 and not drift
    print(
        f"books: {logged} requests billed, balance {balance} = "
        f"{initial * len(user_ids)} - {charged}: "
        f"{'exact, zero drift' if exact else 'DRIFT ' + str(drift)}"
    )
    if not exact:
        sys.exit(1)


if __name__ == "__main__":
    main()
