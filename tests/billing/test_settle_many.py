"""`usage_settle_many`: a batch settles exactly as its requests would one by one."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection

from accounts.models import Token
from billing.metering import (
    Settlement,
    usage_release,
    usage_reserve,
    usage_settle,
    usage_settle_many,
)
from billing.models import Account, Reservation
from billing.selectors import books_drift
from logs.models import RequestLog, TokenIp
from tests.billing.helpers import LOG, books_snapshot, fund, make_token
from tests.factories import UserFactory
from tests.logs.helpers import raw_aggregates, raw_ip_hours, rollup_aggregates, rollup_ip_hours

UNITS = ("minute", "hour", "day")


@pytest.fixture(params=["single_statement", "orm"])
def metering_path(request, monkeypatch):
    """Both settle paths: PostgreSQL's one statement and the portable ORM one."""
    if request.param == "orm":
        monkeypatch.setattr("billing.metering._single_statement", lambda: False)
    return request.param


def _state(user_id: int, token_id: int) -> tuple:
    account = Account.objects.get(pk=user_id)
    token = Token.objects.get(pk=token_id)
    return (
        account.balance,
        account.reserved,
        account.used,
        account.request_count,
        token.quota_remaining,
        token.reserved,
        token.used,
        token.request_count,
    )


@pytest.mark.django_db
def test_a_batch_settles_each_request_like_usage_settle(user, metering_path):
    # Given two accounts, a quota'd token and an unlimited one, and open requests
    fund(user, 1_000_000)
    token, _ = make_token(user, quota=600_000)
    other = UserFactory()
    fund(other, 50_000)
    other_token, _ = make_token(other)
    holds = {"a1": 100_000, "a2": 50_000, "a3": 20_000, "b1": 10_000, "b2": 30_000}
    for request_id, amount in holds.items():
        owner, owner_token = (user, token) if request_id[0] == "a" else (other, other_token)
        usage_reserve(
            token_id=owner_token.pk, user_id=owner.pk, request_id=request_id, amount=amount
        )
    # a late request, released before its settle came
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="late", amount=5_000)
    usage_release(request_id="late")

    # When one batch settles them, with a repeat, a cost over its hold, an unknown
    # request and a negative cost among them
    errors = usage_settle_many(
        [
            Settlement(request_id="a1", cost=70_000, log=LOG),
            Settlement(request_id="b1", cost=10_000, log=LOG),
            Settlement(request_id="a1", cost=99_000, log=LOG),  # repeat: the first one counts
            Settlement(request_id="a2", cost=0, log=LOG),
            Settlement(request_id="b2", cost=45_000, log=LOG),  # over its hold of 30,000
            Settlement(request_id="late", cost=3_000, log=LOG),
            Settlement(request_id="unknown", cost=1, log=LOG),
            Settlement(request_id="a3", cost=-5, log=LOG),
        ]
    )

    # Then each one is settled as usage_settle would, and only the bad ones fail
    assert [type(error).__name__ if error else None for error in errors] == [
        None,
        None,
        None,
        None,
        None,
        None,
        "ValueError",
        "ValueError",
    ]
    # user: 70,000 + 0 + 3,000 (late, from the free balance) charged; a3 still held
    assert _state(user.pk, token.pk) == (927_000, 20_000, 73_000, 3, 527_000, 20_000, 73_000, 3)
    # other: 10,000 + 45,000 over the hold, charged in full: it owes 5,000
    assert _state(other.pk, other_token.pk) == (-5_000, 0, 55_000, 2, None, 0, 55_000, 2)
    costs = dict(RequestLog.objects.values_list("request_id", "cost"))
    assert costs == {"a1": 70_000, "a2": 0, "b1": 10_000, "b2": 45_000, "late": 3_000}
    assert Reservation.objects.get(request_id="a3").status == Reservation.Status.OPEN
    assert books_drift() == []
    for unit in UNITS:
        assert rollup_aggregates(unit) == raw_aggregates(unit)
    assert rollup_ip_hours() == raw_ip_hours()

    # And settling the same batch again changes nothing
    before = books_snapshot()
    again = usage_settle_many(
        [Settlement(request_id=request_id, cost=1, log=LOG) for request_id in costs]
    )
    assert again == [None] * len(costs)
    assert books_snapshot() == before


@pytest.mark.django_db
def test_a_batch_whose_statement_fails_settles_the_others_one_by_one(user):
    fund(user, 1_000_000)
    token, _ = make_token(user)
    for request_id in ("good1", "bad", "good2"):
        usage_reserve(token_id=token.pk, user_id=user.pk, request_id=request_id, amount=10_000)

    errors = usage_settle_many(
        [
            Settlement(request_id="good1", cost=1_000, log=LOG),
            Settlement(request_id="bad", cost=1_000, log=replace(LOG, client_ip="not an address")),
            Settlement(request_id="good2", cost=2_000, log=LOG),
        ]
    )

    assert errors[0] is None
    assert errors[2] is None
    assert errors[1] is not None
    account = Account.objects.get(pk=user.pk)
    assert (account.balance, account.reserved, account.used) == (997_000, 10_000, 3_000)
    assert Reservation.objects.get(request_id="bad").status == Reservation.Status.OPEN
    assert set(RequestLog.objects.values_list("request_id", flat=True)) == {"good1", "good2"}
    assert books_drift() == []


@pytest.mark.django_db
def test_a_batch_marks_and_emails_a_new_ip_once(
    user, metering_path, django_capture_on_commit_callbacks
):
    # Given a token never used, and a batch from two addresses, each twice
    user.notify_new_ip = True
    user.save(update_fields=["notify_new_ip"])
    fund(user, 1_000_000)
    token, _ = make_token(user)
    addresses = ["203.0.113.7", "203.0.113.7", "198.51.100.99", "198.51.100.99"]
    for number in range(4):
        usage_reserve(token_id=token.pk, user_id=user.pk, request_id=f"n{number}", amount=100)

    with django_capture_on_commit_callbacks(execute=True):
        usage_settle_many(
            [
                Settlement(request_id=f"n{number}", cost=10, log=replace(LOG, client_ip=address))
                for number, address in enumerate(addresses)
            ]
        )

    # Then, as one by one, the first address is not news and the second one is
    new_log = RequestLog.objects.get(request_id="n2")
    marked = TokenIp.objects.filter(is_new_on_token=True).values_list("first_log_id", flat=True)
    assert list(marked) == [new_log.pk]
    assert set(TokenIp.objects.values_list("client_ip", "requests")) == {
        ("203.0.113.7", 2),
        ("198.51.100.99", 2),
    }
    assert len(mail.outbox) == 1
    assert "198.51.100.99" in mail.outbox[0].subject


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_concurrent_batches_settle_to_the_exact_total_and_repeats_charge_once():
    # Given two accounts, three tokens, and 1,200 open requests
    users = [UserFactory(), UserFactory()]
    fund(users[0], 50_000_000)
    fund(users[1], 50_000_000)
    tokens = [
        make_token(users[0], quota=30_000_000, name="a")[0],
        make_token(users[0], name="b")[0],
        make_token(users[1], quota=40_000_000, name="c")[0],
    ]
    generator = random.Random(2026)
    holds = [generator.randint(1_000, 30_000) for _ in range(1_200)]
    costs = [generator.randint(0, hold) for hold in holds]
    owners = [tokens[index % 3] for index in range(1_200)]
    for index, token in enumerate(owners):
        usage_reserve(
            token_id=token.pk, user_id=token.user_id, request_id=f"m{index}", amount=holds[index]
        )

    # When 8 threads settle them in batches of 1 to 60, in shuffled order, and every
    # request is also sent a second time in another thread's batch
    order = list(range(1_200)) * 2
    generator.shuffle(order)
    sizes = []
    while sum(sizes) < len(order):
        sizes.append(generator.randint(1, 60))
    batches, start = [], 0
    for size in sizes:
        batches.append(order[start : start + size])
        start += size
    barrier = threading.Barrier(8)

    def work(thread: int) -> list:
        barrier.wait(timeout=30)
        try:
            errors = []
            for batch in batches[thread::8]:
                errors += usage_settle_many(
                    [
                        Settlement(
                            request_id=f"m{index}",
                            cost=costs[index],
                            log=replace(LOG, client_ip=f"198.51.100.{index % 5}"),
                        )
                        for index in batch
                    ]
                )
            return errors
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        errors = [error for result in pool.map(work, range(8)) for error in result]

    # Then nothing failed, each request is charged once, and the books are exact
    assert errors == [None] * 2_400
    assert RequestLog.objects.count() == 1_200
    for user_index, user in enumerate(users):
        charged = sum(costs[index] for index in range(1_200) if owners[index].user_id == user.pk)
        count = sum(1 for index in range(1_200) if owners[index].user_id == user.pk)
        account = Account.objects.get(pk=user.pk)
        assert (account.balance, account.reserved, account.used, account.request_count) == (
            50_000_000 - charged,
            0,
            charged,
            count,
        ), user_index
    for token in tokens:
        token.refresh_from_db()
        charged = sum(costs[index] for index in range(1_200) if owners[index].pk == token.pk)
        assert (token.reserved, token.used, token.request_count) == (0, charged, 400)
    assert tokens[0].quota_remaining == 30_000_000 - tokens[0].used
    assert tokens[1].quota_remaining is None
    assert not Reservation.objects.filter(status=Reservation.Status.OPEN).exists()
    for unit in UNITS:
        assert rollup_aggregates(unit) == raw_aggregates(unit)
    assert rollup_ip_hours() == raw_ip_hours()
    assert sum(TokenIp.objects.values_list("requests", flat=True)) == 1_200
    assert books_drift() == []
    call_command("reconcile")


@pytest.mark.django_db
def test_usage_settle_is_a_batch_of_one(user):
    fund(user, 100_000)
    token, _ = make_token(user)
    usage_reserve(token_id=token.pk, user_id=user.pk, request_id="one", amount=10_000)
    usage_settle(request_id="one", cost=4_000, log=LOG)
    assert usage_settle_many([Settlement(request_id="one", cost=9_000, log=LOG)]) == [None]
    assert Account.objects.get(pk=user.pk).balance == 96_000
