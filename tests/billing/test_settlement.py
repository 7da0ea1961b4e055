"""`billing.settlement`: the one writer of settled requests, on both of its paths.

A batch statement on PostgreSQL and the ORM elsewhere (the embedded SQLite default)
must write the same books: log rows, rollups, grant, account and token sums.
"""

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, replace

import pytest
from django.core import mail
from django.db import connection

from accounts.models import Token
from billing.grants import grant_return
from billing.models import Account, Reservation
from billing.selectors import books_drift
from billing.settlement import LOG_FACTS, Settlement, settle_many
from logs.data import RequestLogData
from logs.models import RequestLog, TokenIp
from tests.billing.helpers import LOG, books_snapshot, fund, hold, make_token, spend
from tests.factories import UserFactory
from tests.logs.helpers import raw_aggregates, raw_ip_hours, rollup_aggregates, rollup_ip_hours

UNITS = ("minute", "hour", "day")


@pytest.fixture(params=["one_statement", "orm"])
def settle_path(request, monkeypatch):
    """Both paths of the writer: PostgreSQL's one statement and the portable ORM one."""
    if request.param == "orm":
        monkeypatch.setattr("billing.settlement.uses_one_statement", lambda: False)
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


def test_the_log_row_columns_are_the_request_facts():
    # One list of columns: every fact the relay hands over is a column of the row.
    assert set(LOG_FACTS) == {field.name for field in fields(RequestLogData)}
    columns = {field.attname for field in RequestLog._meta.concrete_fields}
    assert set(LOG_FACTS) <= columns


@pytest.mark.django_db
def test_a_batch_charges_each_request_in_full_once(user, settle_path):
    # Given two accounts, a quota'd token and an unlimited one, each with a grant
    fund(user, 1_000_000)
    token, _ = make_token(user, quota=600_000)
    other = UserFactory()
    fund(other, 50_000)
    other_token, _ = make_token(other)
    grant = hold(token, 200_000)
    other_grant = hold(other_token, 40_000)
    # and a grant freed (its lease ended) before its request was written
    late_grant = hold(token, 5_000)
    grant_return(grant_id=late_grant)

    # When one batch writes them, with a repeat and a cost over what a grant holds
    settle_many(
        [
            Settlement(grant_id=grant, request_id="a1", cost=70_000, log=LOG),
            Settlement(grant_id=other_grant, request_id="b1", cost=10_000, log=LOG),
            Settlement(grant_id=grant, request_id="a1", cost=99_000, log=LOG),  # first counts
            Settlement(grant_id=grant, request_id="a2", cost=0, log=LOG),
            # 45,000 on a grant that holds 30,000 more: 30,000 from it, 15,000 overrun
            Settlement(grant_id=other_grant, request_id="b2", cost=45_000, overrun=15_000, log=LOG),
            Settlement(grant_id=late_grant, request_id="late", cost=3_000, log=LOG),
        ],
        lease_seconds=60,
    )

    # Then each one is charged its whole cost exactly once
    # user: 70,000 + 0 + 3,000 (late, from the free balance); the grant holds the rest
    assert _state(user.pk, token.pk) == (
        927_000,
        130_000,
        73_000,
        3,
        527_000,
        130_000,
        73_000,
        3,
    )
    # other: 10,000 + 45,000, charged in full: it owes 5,000 and nothing stays held
    assert _state(other.pk, other_token.pk) == (-5_000, 0, 55_000, 2, None, 0, 55_000, 2)
    costs = dict(RequestLog.objects.values_list("request_id", "cost"))
    assert costs == {"a1": 70_000, "a2": 0, "b1": 10_000, "b2": 45_000, "late": 3_000}
    assert books_drift() == []
    for unit in UNITS:
        assert rollup_aggregates(unit) == raw_aggregates(unit)
    assert rollup_ip_hours() == raw_ip_hours()

    # And writing the same batch again changes nothing
    before = books_snapshot()
    settle_many(
        [
            Settlement(grant_id=grant, request_id=request_id, cost=1, log=LOG)
            for request_id in costs
        ],
        lease_seconds=60,
    )
    assert books_snapshot() == before


@pytest.mark.django_db
def test_a_negative_cost_or_an_overrun_outside_the_cost_is_refused_and_changes_nothing(user):
    fund(user, 1_000_000)
    token, _ = make_token(user)
    grant = hold(token, 10_000)
    before = books_snapshot()

    for bad in (
        Settlement(grant_id=grant, request_id="n", cost=-5, log=LOG),
        Settlement(grant_id=grant, request_id="o", cost=5, overrun=6, log=LOG),
    ):
        with pytest.raises(ValueError, match="negative"):
            settle_many([bad], lease_seconds=60)

    assert books_snapshot() == before


@pytest.mark.django_db
def test_an_unlimited_token_holds_nothing_of_a_quota_but_counts_usage(user):
    fund(user, 1_000_000)
    token, _ = make_token(user)

    spend(token, cost=1_000, held=300_000)

    token.refresh_from_db()
    assert (token.quota_remaining, token.reserved, token.used) == (None, 0, 1_000)
    assert not Reservation.objects.filter(token_amount__gt=0).exists()
    assert books_drift() == []


@pytest.mark.django_db
def test_a_quota_given_while_a_request_is_in_flight_never_goes_below_other_holds(user, settle_path):
    fund(user, 1_000_000)
    token, _ = make_token(user)
    first = hold(token, 300_000)  # taken while the token had no quota
    Token.objects.filter(pk=token.pk).update(quota_remaining=100_000)
    hold(token, 60_000)  # taken on the new quota

    settle_many(
        [Settlement(grant_id=first, request_id="r1", cost=250_000, log=LOG)], lease_seconds=60
    )

    token.refresh_from_db()
    assert (token.quota_remaining, token.reserved, token.used) == (60_000, 60_000, 250_000)
    assert Account.objects.get(user=user).balance == 750_000
    assert books_drift() == []


@pytest.mark.django_db
def test_a_cost_above_the_token_quota_is_charged_in_full_and_exhausts_the_quota(user):
    fund(user, 1_000_000)
    token, _ = make_token(user, quota=30_000)

    spend(token, cost=50_000, held=10_000)

    token.refresh_from_db()
    assert (token.quota_remaining, token.reserved, token.used) == (0, 0, 50_000)
    assert Account.objects.get(user=user).balance == 950_000
    assert books_drift() == []


@pytest.mark.django_db
def test_the_request_log_keeps_the_token_name_after_the_token_is_deleted(user):
    from tokens.services import token_delete

    fund(user, 1_000_000)
    token, _ = make_token(user)
    spend(token, cost=1_000)

    token_delete(token=token)

    log = RequestLog.objects.get()
    assert log.token_id is None
    assert log.token_name == "test"


@pytest.mark.django_db
def test_a_batch_marks_and_emails_a_new_ip_once(
    user, settle_path, django_capture_on_commit_callbacks
):
    # Given a token never used, and a batch from two addresses, each twice
    user.notify_new_ip = True
    user.save(update_fields=["notify_new_ip"])
    fund(user, 1_000_000)
    token, _ = make_token(user)
    grant = hold(token, 1_000)
    addresses = ["203.0.113.7", "203.0.113.7", "198.51.100.99", "198.51.100.99"]

    with django_capture_on_commit_callbacks(execute=True):
        settle_many(
            [
                Settlement(
                    grant_id=grant,
                    request_id=f"n{number}",
                    cost=10,
                    log=replace(LOG, client_ip=address),
                )
                for number, address in enumerate(addresses)
            ],
            lease_seconds=60,
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
def test_concurrent_batches_write_the_exact_total_and_repeats_charge_once():
    # Given two accounts, three tokens, a grant each, and 1,200 settled requests
    users = [UserFactory(), UserFactory()]
    fund(users[0], 50_000_000)
    fund(users[1], 50_000_000)
    tokens = [
        make_token(users[0], quota=30_000_000, name="a")[0],
        make_token(users[0], name="b")[0],
        make_token(users[1], quota=40_000_000, name="c")[0],
    ]
    grants = [hold(token, 12_000_000) for token in tokens]
    generator = random.Random(2026)
    costs = [generator.randint(0, 30_000) for _ in range(1_200)]
    settlements = [
        Settlement(grant_id=grants[index % 3], request_id=f"m{index}", cost=cost, log=LOG)
        for index, cost in enumerate(costs)
    ]

    # When 8 threads write them in batches of 1 to 60, in shuffled order, and every
    # request is also written a second time in another thread's batch
    work = settlements + settlements
    generator.shuffle(work)
    batches = []
    while work:
        size = generator.randint(1, 60)
        batches.append(work[:size])
        work = work[size:]

    def write(batch: list[Settlement]) -> None:
        try:
            settle_many(batch, lease_seconds=60)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, batches))

    # Then every request is charged once, in full, and the books close
    assert RequestLog.objects.count() == 1_200
    for owner in users:
        account = Account.objects.get(pk=owner.pk)
        mine = [cost for index, cost in enumerate(costs) if tokens[index % 3].user_id == owner.pk]
        assert (account.used, account.request_count) == (sum(mine), len(mine))
    for index, token in enumerate(tokens):
        token.refresh_from_db()
        assert token.used == sum(costs[index::3])
    for grant in grants:
        grant_return(grant_id=grant)
    assert Account.objects.filter(reserved__gt=0).count() == 0
    assert books_drift() == []
