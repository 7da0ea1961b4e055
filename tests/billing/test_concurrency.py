"""The credit meter under real concurrency against PostgreSQL (committed transactions):
many threads in one process, and two OS processes on one account."""

import json
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from billing.grants import UsageRefused, grant_release_expired
from billing.meter import CreditMeter
from billing.models import Account, Reservation
from billing.selectors import books_drift
from billing.settlement import Settlement, settle_many
from logs.models import RequestLog
from tests.billing.helpers import LOG, fund, hold, make_token
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_1000_concurrent_holds_settle_to_the_exact_total():
    # Given an account, a token with a quota, and 1,000 requests held at once by 20
    # threads through one meter (grants that never age here)
    user = UserFactory()
    initial = 50_000_000
    fund(user, initial)
    token, _ = make_token(user, quota=40_000_000)
    generator = random.Random(1234)
    holds = [generator.randint(1_000, 30_000) for _ in range(1_000)]
    costs = [generator.randint(0, amount) for amount in holds]
    meter = CreditMeter(max_age_seconds=60)

    def reserve(chunk: range) -> None:
        try:
            for index in chunk:
                meter.reserve(
                    token_id=token.pk, user_id=user.pk, request_id=f"c{index}", amount=holds[index]
                )
        finally:
            connection.close()

    def settle(chunk: range) -> None:
        for index in chunk:
            assert meter.settle(request_id=f"c{index}", cost=costs[index], log=LOG)

    chunks = [range(start, start + 50) for start in range(0, 1_000, 50)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(reserve, chunks))
    account = Account.objects.get(pk=user.pk)
    assert account.reserved >= sum(holds)

    # When they all settle concurrently with random actual costs <= their hold
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(settle, chunks))
    meter.close()

    # Then the balance is the initial one minus exactly the actual costs
    account = Account.objects.get(pk=user.pk)
    token.refresh_from_db()
    assert account.balance == initial - sum(costs)
    assert (account.reserved, account.request_count) == (0, 1_000)
    assert token.used == sum(costs)
    assert token.quota_remaining == 40_000_000 - sum(costs)
    assert not Reservation.objects.filter(status=Reservation.Status.OPEN).exists()
    assert books_drift() == []

    # And a grant left by a process that died is freed once its lease has passed
    hold(token, 5_000)
    assert grant_release_expired() == 0
    Reservation.objects.filter(status=Reservation.Status.OPEN).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert grant_release_expired() == 1
    assert Account.objects.get(pk=user.pk).reserved == 0
    assert books_drift() == []


def test_concurrent_writes_of_one_request_charge_once():
    # Given one request settled from its grant, written by 16 writers at once
    user = UserFactory()
    fund(user, 1_000_000)
    token, _ = make_token(user)
    grant_id = hold(token, 10_000)
    settlement = Settlement(grant_id=grant_id, request_id="dup", cost=7_000, log=LOG)

    def write(_: int) -> None:
        try:
            settle_many([settlement], lease_seconds=60)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(16)))

    # Then it is charged and logged once
    account = Account.objects.get(pk=user.pk)
    assert (account.balance, account.request_count, account.reserved) == (993_000, 1, 3_000)
    assert RequestLog.objects.filter(request_id="dup").count() == 1
    assert books_drift() == []


def test_two_os_processes_spend_one_account_exactly():
    # Given $1 on one account and two relay processes (real OS processes, each with its
    # own meter, connections and grants) that together ask for twice that
    user = UserFactory()
    fund(user, 1_000_000)
    token, _ = make_token(user)
    cost = 1_000
    database = connection.settings_dict
    url = (
        f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}"
    )
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "comet.settings.test",
        "DATABASE_URL": url,
    }

    # When both spend at the same time, 1,000 requests of $0.001 each
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.billing.meter_process",
                str(token.pk),
                str(user.pk),
                "1000",
                str(cost),
                tag,
            ],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in ("first", "second")
    ]
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))

    # Then no more than the balance was spent, every request served was charged and
    # logged once, nothing stays held, and the books close
    served = sum(result["served"] for result in results)
    assert all(result["served"] > 0 for result in results)
    assert {code for result in results for code in result["codes"]} <= {"insufficient_quota"}
    account = Account.objects.get(pk=user.pk)
    assert (account.balance, account.reserved, account.used, account.request_count) == (
        1_000_000 - served * cost,
        0,
        served * cost,
        served,
    )
    assert account.balance >= 0
    assert RequestLog.objects.filter(user=user).count() == served
    assert not Reservation.objects.filter(status=Reservation.Status.OPEN).exists()
    assert books_drift() == []
    call_command("reconcile")
    # and no money is stuck: what is left is spent to the last request it pays for
    meter = CreditMeter()
    left = account.balance // cost
    for number in range(left + 1):
        try:
            meter.reserve(
                token_id=token.pk, user_id=user.pk, request_id=f"rest-{number}", amount=cost
            )
        except UsageRefused:
            assert number == left
            break
        meter.settle(request_id=f"rest-{number}", cost=cost, log=LOG)
    meter.close()
    assert Account.objects.get(pk=user.pk).balance == account.balance - left * cost < cost
