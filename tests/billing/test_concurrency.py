"""Reserve / settle under real concurrency against PostgreSQL (committed transactions).

PostgreSQL here allows 100 connections, shared with other test runs, so the 200
workers are asyncio tasks calling the async twins the relay calls, run on a pool
of real threads that each hold their own database connection.
"""

import asyncio
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from billing.metering import (
    UsageRefused,
    ausage_reserve,
    ausage_settle,
    reservation_release_expired,
    usage_reserve,
    usage_settle,
)
from billing.models import Account, Reservation
from billing.selectors import books_drift
from logs.models import RequestLog
from tests.billing.helpers import LOG, fund, make_token, run_with_threads
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_200_workers_spend_one_account_to_exactly_92_micro_usd():
    # Given an account holding $10 and one unlimited token
    user = UserFactory()
    fund(user, 10_000_000)
    token, _ = make_token(user)
    lowest_seen = []
    refusal_codes: set[str] = set()
    stop = threading.Event()

    def watch_balance() -> None:
        while not stop.is_set():
            lowest_seen.append(
                Account.objects.filter(pk=user.pk).values_list("balance", "reserved").get()
            )
            stop.wait(0.05)
        connection.close()

    async def worker(number: int) -> tuple[int, int]:
        succeeded = refused = 0
        for attempt in range(100):
            request_id = f"w{number}-{attempt}"
            try:
                await ausage_reserve(
                    token_id=token.pk, user_id=user.pk, request_id=request_id, amount=1_237
                )
            except UsageRefused as refusal:
                refusal_codes.add(refusal.code)
                refused += 1
                continue
            await ausage_settle(request_id=request_id, cost=1_237, log=LOG)
            succeeded += 1
        return succeeded, refused

    async def all_workers():
        return await asyncio.gather(*(worker(number) for number in range(200)))

    # When 200 workers each try 100 reserve + settle of 1,237 micro-USD at once
    watcher = threading.Thread(target=watch_balance)
    watcher.start()
    try:
        results = run_with_threads(all_workers)
    finally:
        stop.set()
        watcher.join()

    # Then exactly 8,084 succeed, the rest are refused, and 92 micro-USD are left
    succeeded = sum(result[0] for result in results)
    refused = sum(result[1] for result in results)
    assert succeeded == 8_084
    assert refused == 20_000 - 8_084
    assert refusal_codes == {"insufficient_quota"}
    account = Account.objects.get(pk=user.pk)
    assert (account.balance, account.reserved, account.used, account.request_count) == (
        92,
        0,
        8_084 * 1_237,
        8_084,
    )
    assert RequestLog.objects.count() == 8_084
    assert not Reservation.objects.filter(status=Reservation.Status.OPEN).exists()
    # and no intermediate state ever showed a negative balance or over-reservation
    assert lowest_seen
    assert all(balance >= reserved >= 0 for balance, reserved in lowest_seen)
    assert books_drift() == []
    call_command("reconcile")


def test_1000_concurrent_reservations_settle_to_the_exact_total():
    # Given an account and 1,000 reservations taken concurrently by 20 threads
    user = UserFactory()
    initial = 50_000_000
    fund(user, initial)
    token, _ = make_token(user, quota=40_000_000)
    generator = random.Random(1234)
    holds = [generator.randint(1_000, 30_000) for _ in range(1_000)]
    costs = [generator.randint(0, hold) for hold in holds]

    def reserve(chunk: range) -> None:
        try:
            for index in chunk:
                usage_reserve(
                    token_id=token.pk, user_id=user.pk, request_id=f"c{index}", amount=holds[index]
                )
        finally:
            connection.close()

    def settle(chunk: range) -> None:
        try:
            for index in chunk:
                usage_settle(request_id=f"c{index}", cost=costs[index], log=LOG)
        finally:
            connection.close()

    chunks = [range(start, start + 50) for start in range(0, 1_000, 50)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(reserve, chunks))
    account = Account.objects.get(pk=user.pk)
    assert account.reserved == sum(holds)
    assert Reservation.objects.filter(status=Reservation.Status.OPEN).count() == 1_000

    # When they all settle concurrently with random actual costs <= their hold
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(settle, chunks))

    # Then the balance is the initial one minus exactly the actual costs
    account = Account.objects.get(pk=user.pk)
    token.refresh_from_db()
    assert account.balance == initial - sum(costs)
    assert account.reserved == 0
    assert token.used == sum(costs)
    assert token.quota_remaining == 40_000_000 - sum(costs)
    assert not Reservation.objects.filter(status=Reservation.Status.OPEN).exists()
    assert books_drift() == []

    # And an abandoned reservation is released once its lease has passed
    usage_reserve(
        token_id=token.pk, user_id=user.pk, request_id="abandoned", amount=5_000, lease_seconds=1
    )
    assert reservation_release_expired() == 0
    Reservation.objects.filter(request_id="abandoned").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert reservation_release_expired() == 1
    assert Account.objects.get(pk=user.pk).reserved == 0
    assert books_drift() == []


def test_concurrent_settles_of_one_request_charge_once():
    user = UserFactory()
    fund(user, 1_000_000)
    token, _ = make_token(user)
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="dup", amount=10_000)

    def settle(_: int) -> None:
        try:
            usage_settle(request_id="dup", cost=7_000, log=LOG)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(settle, range(16)))

    account = Account.objects.get(pk=user.pk)
    assert (account.balance, account.request_count, account.reserved) == (993_000, 1, 0)
    assert RequestLog.objects.filter(request_id="dup").count() == 1
